/*
 * vs/scan.h - the content scanners' library (workers/scan): a ruleset of
 * secret, PII, covert-channel or prompt-injection patterns compiled once
 * into one Hyperscan database, and a scan that reports confirmed findings.
 *
 * Why it is shaped like this:
 *  - Rules are data (YAML files under workers/scan/rules), not code: an id,
 *    a family, a pattern, a severity and a confidence, optional keywords,
 *    a validator (Luhn, SSN rules, IBAN mod-97, JWT structure, Shannon
 *    entropy) and allowlists (global and per rule: literal values, regexes,
 *    stopwords). A line holding the marker `vs:allow` is never reported.
 *  - Hyperscan finds where a rule's match ends, without start-of-match
 *    tracking (that would slow every rule down). Each hit is confirmed by
 *    PCRE2 (JIT) on a window that ends there, which also yields the start,
 *    the secret (a capture group) for the validator and the allowlists.
 *  - A compiled ruleset is immutable and shared by every thread; each
 *    thread scans with its own scratch (Hyperscan's and PCRE2's).
 *  - A finding carries the rule, the family, the offset and length of the
 *    secret, the severity and a redacted sample - never the secret itself.
 * Every function returns 0 or -errno (library code never exits).
 */
#ifndef VS_SCAN_H
#define VS_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vs_severity {
    VS_SEV_INFO,
    VS_SEV_LOW,
    VS_SEV_MEDIUM,
    VS_SEV_HIGH,
    VS_SEV_CRITICAL,
};

enum vs_confidence { VS_CONF_LOW, VS_CONF_MEDIUM, VS_CONF_HIGH };

#define VS_SCAN_SAMPLE_MAX 48

struct vs_finding {
    const char *rule_id;        /* valid while the ruleset is */
    const char *family;
    const char *description;
    size_t offset, length;      /* the secret (or the whole match) in the scanned input */
    size_t line, column;        /* 1-based, of offset */
    enum vs_severity severity;
    enum vs_confidence confidence;
    unsigned transforms;        /* VS_NORM_* bits of the text it was found in; 0: as is */
    char sample[VS_SCAN_SAMPLE_MAX]; /* redacted: a few leading characters and the length */
};

typedef struct vs_ruleset vs_ruleset;
typedef struct vs_scan_scratch vs_scan_scratch;

/* Load and compile a ruleset file. On failure err (errlen bytes) says
 * where and why ("exfil.yaml:120: rule aws-key: pattern: ..."). */
int vs_ruleset_load(const char *path, vs_ruleset **out, char *err, size_t errlen);
/* The same from YAML text; name is used in messages. */
int vs_ruleset_parse(const char *yaml, size_t len, const char *name, vs_ruleset **out, char *err,
                     size_t errlen);
void vs_ruleset_free(vs_ruleset *rs);
/* The ruleset's name (its `ruleset:` key) and rule count. */
const char *vs_ruleset_name(const vs_ruleset *rs);
size_t vs_ruleset_size(const vs_ruleset *rs);
/* Rule i's id, family, description and severity (for reports such as SARIF). */
int vs_ruleset_rule(const vs_ruleset *rs, size_t i, const char **id, const char **family,
                    const char **description, enum vs_severity *severity);

/* Per-thread scratch for one ruleset. */
int vs_scan_scratch_new(const vs_ruleset *rs, vs_scan_scratch **out);
void vs_scan_scratch_free(vs_scan_scratch *s);
/* A ruleset file loaded with one scratch for it: what a scanner on one
 * thread needs. On failure both are NULL and err says why. */
int vs_ruleset_load_with_scratch(const char *path, vs_ruleset **rules, vs_scan_scratch **scratch,
                                 char *err, size_t errlen);

/* Called for each confirmed finding, in order of where its match ends;
 * return nonzero to stop the scan (returned). */
typedef int (*vs_finding_fn)(const struct vs_finding *f, void *arg);

/* Scan data (one block; up to UINT32_MAX bytes). transforms is recorded
 * in the findings (the caller's VS_NORM_* bits when data is a normalized
 * or decoded copy; 0 for the original). 0, fn's value, or -errno. */
int vs_scan(const vs_ruleset *rs, vs_scan_scratch *s, const uint8_t *data, size_t len,
            unsigned transforms, vs_finding_fn fn, void *arg);

/* Scan text the way the injection stage does: normalized (vs/normalize.h:
 * invisible characters, look-alikes, leetspeak, spaced letters, case and
 * spacing), and each encoded run it holds (base64, hex, percent, HTML
 * entities, \u escapes; nested up to three levels), decoded and
 * normalized. Hyperscan reads the normalized text with its line breaks as
 * spaces (phrase lattices are written with one space between words);
 * patterns are confirmed on it with the breaks. Findings point into the
 * original text - through the normalizer's map, or at the start of the
 * encoded run - and carry the transformations that revealed them (none
 * when the matched text is the original's up to case and spacing); a rule
 * that matched the same original bytes more than once is reported once,
 * as found with the fewest transformations. */
int vs_scan_deep(const vs_ruleset *rs, vs_scan_scratch *s, const uint8_t *data, size_t len,
                 vs_finding_fn fn, void *arg);

/* Streaming: input that arrives in pieces, scanned in bounded memory
 * (segments of VS_SCAN_SEGMENT bytes overlapping by twice the longest
 * match) with the findings one vs_scan (deep: vs_scan_deep) of the whole
 * input would give, in stream offsets and positions. Matches that settle
 * overlaps are only compared within a segment. The stream uses s until
 * vs_scan_stream_finish; fn is called from write and finish, whose value
 * is then fn's nonzero value, or 0, or -errno. */
#define VS_SCAN_SEGMENT (1u << 20)
typedef struct vs_scan_stream vs_scan_stream;
int vs_scan_stream_new(const vs_ruleset *rs, vs_scan_scratch *s, bool deep, vs_finding_fn fn,
                       void *arg, vs_scan_stream **out);
int vs_scan_stream_write(vs_scan_stream *st, const uint8_t *data, size_t len);
/* Scan what is left (call once, at the end of the input). */
int vs_scan_stream_finish(vs_scan_stream *st);
void vs_scan_stream_free(vs_scan_stream *st);

const char *vs_scan_severity_name(enum vs_severity s);
/* "info".."critical" -> the level; -EINVAL otherwise. */
int vs_scan_severity_parse(const char *name, enum vs_severity *out);

/* ---- the size anomaly (src/anomaly.c) ---------------------------------- */

/* The rule id of size-anomaly findings (not a rule of any ruleset). */
#define VS_SCAN_SIZE_ANOMALY_RULE "size-anomaly"
/* Default factors. Outputs miss their declared size by small multiples all
 * the time (formats, logs, compression), so up to 4x is normal; above it
 * the output is worth a look (medium: reported, still delivered); above
 * 16x - more than an order of magnitude - it is the shape of bulk
 * exfiltration or a padded covert payload (high: blocked at the default
 * block level). */
#define VS_SCAN_SIZE_FLAG_FACTOR 4.0
#define VS_SCAN_SIZE_BLOCK_FACTOR 16.0

/* Judge an output of size bytes against the expected size. Returns 1 and
 * fills out (rule VS_SCAN_SIZE_ANOMALY_RULE, family "covert", offset =
 * expected, length = size - expected, line and column 0 (unknown), a
 * sample like "12582912 bytes, expected 1048576") when size is above
 * flag_factor x expected: medium, or high above block_factor x expected.
 * Returns 0 when it is within bounds or expected is 0 (unknown), and
 * -EINVAL when out is NULL or the factors are not 1 <= flag <= block. */
int vs_scan_size_anomaly(uint64_t size, uint64_t expected, double flag_factor, double block_factor,
                         struct vs_finding *out);

#endif
