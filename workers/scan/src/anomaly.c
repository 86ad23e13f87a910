/*
 * anomaly.c - the size anomaly of the exfil scan (vs_scan_size_anomaly,
 * vs/scan.h): an output far larger than its task said to expect.
 *
 * Why: the rules find secrets they can recognize. An agent that dumps a
 * data set, a home directory or a padded covert payload into its output
 * may hold nothing a pattern knows, yet the size gives it away, because
 * the requester declared how much output the task should produce
 * (TaskLimits.expected_output_bytes). The check is reported as a finding
 * like any rule's (rule "size-anomaly", family "covert") so that the
 * reports, the block level and the verdicts treat it the same way. It
 * needs no data, only the two sizes, so it is a separate call and not a
 * rule of the ruleset.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "vs/scan.h"

static bool factor_valid(double f)
{
    return isfinite(f) && f >= 1.0;
}

int vs_scan_size_anomaly(uint64_t size, uint64_t expected, double flag_factor, double block_factor,
                         struct vs_finding *out)
{
    if (out == NULL || !factor_valid(flag_factor) || !factor_valid(block_factor) ||
        block_factor < flag_factor)
        return -EINVAL;
    if (expected == 0 || (double)size <= flag_factor * (double)expected)
        return 0;
    memset(out, 0, sizeof *out);
    out->rule_id = VS_SCAN_SIZE_ANOMALY_RULE;
    out->family = "covert";
    out->description = "output far larger than the task expected";
    out->offset = (size_t)expected;
    out->length = (size_t)(size - expected);
    out->severity = (double)size > block_factor * (double)expected ? VS_SEV_HIGH : VS_SEV_MEDIUM;
    out->confidence = VS_CONF_HIGH; /* a measurement, not a guess */
    /* Truncated only for sizes of 16 digits and more. */
    snprintf(out->sample, sizeof out->sample, "%" PRIu64 " bytes, expected %" PRIu64, size,
             expected);
    return 1;
}
