/*
 * rules.c - a ruleset file (YAML) into compiled rules: every rule's
 * pattern compiled by PCRE2 for confirmation, then all of them into one
 * Hyperscan block-mode database (scan.c runs both).
 *
 * The file's shape (unknown keys are errors, with their line):
 *   ruleset: exfil
 *   flags: [caseless]                (added to every rule's)
 *   allow: {literals: [...], regexes: [...], stopwords: [...]}
 *   rules:
 *     - id: aws-access-key-id        (unique)
 *       family: cloud
 *       description: ...
 *       pattern: '...'               (Hyperscan's and PCRE2's common subset)
 *       flags: [caseless, dotall, multiline]
 *       severity: info|low|medium|high|critical
 *       confidence: low|medium|high
 *       keywords: [...]
 *       secret_group: 1
 *       validator: luhn|ssn|iban|jwt|entropy   (entropy needs min_entropy)
 *       min_entropy: 3.5
 *       max_len: 512
 *       lead: 96                       (with a prefilter or lattice; default max_len)
 *       allow: {literals: [...], regexes: [...], stopwords: [...]}
 *       downgrade: [regex, ...]      (on the line before a match: medium at most)
 *     - id: covert-hex-run             (a detector instead of a pattern, detect.c)
 *       detector: hex-run|base64-run
 *       min_len: 129                   window: 64    min_entropy: 3.0
 * The file is read through vs/yaml_doc.h (libyaml's document API, errors
 * as "file:line: reason"), which the egress policies share.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ruleset.h"
#include "vs/yaml_doc.h"

static char *lowercase_dup(const char *s)
{
    char *d = strdup(s);
    for (char *p = d; p != NULL && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p + 32);
    return d;
}

/* A sequence of scalars into a string array (lowercased when asked). */
static int strings(struct vs_yaml_doc *ld, const yaml_node_t *n, bool lower, char ***out, size_t *count)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return vs_yaml_fail(ld, n, "expected a list");
    size_t cap = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    char **v = calloc(cap ? cap : 1, sizeof *v);
    if (v == NULL)
        return -ENOMEM;
    size_t k = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        const yaml_node_t *e = yaml_document_get_node(ld->doc, *it);
        const char *s = vs_yaml_scalar(e);
        if (s == NULL) {
            for (size_t i = 0; i < k; i++)
                free(v[i]);
            free(v);
            return vs_yaml_fail(ld, e, "expected a string");
        }
        if ((v[k++] = lower ? lowercase_dup(s) : strdup(s)) == NULL) {
            for (size_t i = 0; i < k; i++)
                free(v[i]);
            free(v);
            return -ENOMEM;
        }
    }
    *out = v;
    *count = k;
    return 0;
}

static void strings_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

pcre2_code *vs_rule_pcre(const char *pattern, unsigned flags, char *err, size_t errlen)
{
    uint32_t opts = (flags & RULE_CASELESS ? PCRE2_CASELESS : 0) |
                    (flags & RULE_DOTALL ? PCRE2_DOTALL : 0) |
                    (flags & RULE_MULTILINE ? PCRE2_MULTILINE : 0) |
                    PCRE2_USE_OFFSET_LIMIT; /* confirm_around bounds where a match starts */
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &code, &at, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        snprintf(err, errlen, "at offset %zu: %s", (size_t)at, (const char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT it still works, slower */
    return re;
}

#define LATTICE_MAX_LISTS 8
#define LATTICE_MAX_PHRASES 8192

/* Append s to the growing string *buf (len, cap): as it is (raw), or as a
 * regex matching it literally. */
static int append_text(char **buf, size_t *len, size_t *cap, const char *s, bool raw)
{
    for (; *s != '\0'; s++) {
        if (*len + 3 > *cap) {
            size_t ncap = *cap ? *cap * 2 : 4096;
            char *nb = realloc(*buf, ncap);
            if (nb == NULL)
                return -ENOMEM;
            *buf = nb;
            *cap = ncap;
        }
        unsigned char c = (unsigned char)*s;
        bool plain = raw || c == ' ' || c >= 0x80 || (c >= '0' && c <= '9') ||
                     ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
        if (!plain)
            (*buf)[(*len)++] = '\\';
        (*buf)[(*len)++] = (char)c;
    }
    (*buf)[*len] = '\0';
    return 0;
}

/* A phrase lattice - a list of word lists - as a prefilter: every phrase
 * (one word of each list in order, joined by one space; an empty word
 * leaves its list out) a literal alternative. Hyperscan runs such a set of
 * long literals far faster than the same lattice written with short words
 * and \s+ between them, where every common word ("as", "show") is a hit,
 * and compiles it in a fraction of a second (with \s between the words,
 * seconds). The phrases are written for vs_scan_deep's text: normalized,
 * one space between words, line breaks read as spaces. */
static int lattice(struct vs_yaml_doc *ld, const yaml_node_t *n, char **out)
{
    size_t nlists = n->type == YAML_SEQUENCE_NODE
                        ? (size_t)(n->data.sequence.items.top - n->data.sequence.items.start)
                        : 0;
    if (nlists == 0 || nlists > LATTICE_MAX_LISTS)
        return vs_yaml_fail(ld, n, "lattice: expected 1 to %d word lists", LATTICE_MAX_LISTS);
    char **words[LATTICE_MAX_LISTS] = {0};
    size_t counts[LATTICE_MAX_LISTS] = {0}, at[LATTICE_MAX_LISTS] = {0}, phrases = 1;
    int rc = 0;
    for (size_t i = 0; i < nlists && rc == 0; i++) {
        const yaml_node_t *list = yaml_document_get_node(ld->doc, n->data.sequence.items.start[i]);
        rc = strings(ld, list, true, &words[i], &counts[i]);
        if (rc == 0 && (counts[i] == 0 || (phrases *= counts[i]) > LATTICE_MAX_PHRASES))
            rc = vs_yaml_fail(ld, list, "lattice: every list needs a word, and %d phrases at most",
                      LATTICE_MAX_PHRASES);
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (rc == 0)
        rc = append_text(&buf, &len, &cap, "(?:", true);
    size_t emitted = 0;
    for (size_t p = 0; rc == 0 && p < phrases; p++) {
        size_t mark = len;
        if (emitted > 0)
            rc = append_text(&buf, &len, &cap, "|", true);
        bool empty = true;
        for (size_t i = 0; rc == 0 && i < nlists; i++) {
            const char *w = words[i][at[i]];
            if (w[0] != '\0' && !empty)
                rc = append_text(&buf, &len, &cap, " ", true);
            if (rc == 0)
                rc = append_text(&buf, &len, &cap, w, false);
            empty = empty && w[0] == '\0';
        }
        if (rc == 0 && empty)
            buf[len = mark] = '\0'; /* every list left out: no phrase */
        else
            emitted++;
        for (size_t i = nlists; i-- > 0 && ++at[i] == counts[i];)
            at[i] = 0; /* the next phrase, last list fastest */
    }
    if (rc == 0)
        rc = append_text(&buf, &len, &cap, ")", true);
    for (size_t i = 0; i < nlists; i++)
        strings_free(words[i], counts[i]);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    free(*out);
    *out = buf;
    return 0;
}

static void regexes_free(pcre2_code **re, size_t n);

void vs_allowlist_clear(struct allowlist *a)
{
    strings_free(a->literals, a->nliterals);
    strings_free(a->stopwords, a->nstopwords);
    regexes_free(a->regexes, a->nregexes);
    memset(a, 0, sizeof *a);
}

/* A list of PCRE2 regexes (no flags), compiled. */
static int regexes(struct vs_yaml_doc *ld, const yaml_node_t *v, const char *what, pcre2_code ***out,
                   size_t *count)
{
    char **src;
    size_t nsrc;
    int rc = strings(ld, v, false, &src, &nsrc);
    if (rc)
        return rc;
    pcre2_code **re = calloc(nsrc ? nsrc : 1, sizeof *re);
    rc = re == NULL ? -ENOMEM : 0;
    size_t k = 0;
    for (size_t i = 0; i < nsrc && rc == 0; i++) {
        char msg[300];
        if ((re[k] = vs_rule_pcre(src[i], 0, msg, sizeof msg)) == NULL)
            rc = vs_yaml_fail(ld, v, "%s '%s': %s", what, src[i], msg);
        else
            k++;
    }
    strings_free(src, nsrc);
    *out = re; /* the caller frees what was compiled, also on failure */
    *count = k;
    return rc;
}

static void regexes_free(pcre2_code **re, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pcre2_code_free(re[i]);
    free(re);
}

static int allowlist(struct vs_yaml_doc *ld, const yaml_node_t *n, struct allowlist *a)
{
    if (n->type != YAML_MAPPING_NODE)
        return vs_yaml_fail(ld, n, "allow: expected a mapping");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
        const char *key = vs_yaml_scalar(k);
        int rc;
        if (key != NULL && strcmp(key, "literals") == 0) {
            rc = strings(ld, v, false, &a->literals, &a->nliterals);
        } else if (key != NULL && strcmp(key, "stopwords") == 0) {
            rc = strings(ld, v, true, &a->stopwords, &a->nstopwords);
        } else if (key != NULL && strcmp(key, "regexes") == 0) {
            rc = regexes(ld, v, "allow regex", &a->regexes, &a->nregexes);
        } else {
            rc = vs_yaml_fail(ld, k, "allow: unknown key '%s'", key != NULL ? key : "?");
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int enum_value(struct vs_yaml_doc *ld, const yaml_node_t *v, const char *what,
                      const char *const *names, size_t n, int *out)
{
    const char *s = vs_yaml_scalar(v);
    for (size_t i = 0; s != NULL && i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    return vs_yaml_fail(ld, v, "%s: unknown value '%s'", what, s != NULL ? s : "?");
}

static int number(struct vs_yaml_doc *ld, const yaml_node_t *v, const char *what, double lo, double hi,
                  double *out)
{
    const char *s = vs_yaml_scalar(v);
    char *end = NULL;
    double d = s != NULL ? strtod(s, &end) : 0;
    if (s == NULL || end == s || *end != '\0' || d < lo || d > hi)
        return vs_yaml_fail(ld, v, "%s: expected a number from %g to %g", what, lo, hi);
    *out = d;
    return 0;
}

static int rule_flags(struct vs_yaml_doc *ld, const yaml_node_t *v, unsigned *flags)
{
    char **names;
    size_t n;
    int rc = strings(ld, v, true, &names, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (strcmp(names[i], "caseless") == 0)
            *flags |= RULE_CASELESS;
        else if (strcmp(names[i], "dotall") == 0)
            *flags |= RULE_DOTALL;
        else if (strcmp(names[i], "multiline") == 0)
            *flags |= RULE_MULTILINE;
        else
            rc = vs_yaml_fail(ld, v, "flags: unknown flag '%s'", names[i]);
    }
    strings_free(names, n);
    return rc;
}

static int rule_field(struct vs_yaml_doc *ld, struct rule *r, const char *key, const yaml_node_t *v)
{
    static const char *const severities[] = {"info", "low", "medium", "high", "critical"};
    static const char *const confidences[] = {"low", "medium", "high"};
    char **text = strcmp(key, "id") == 0            ? &r->id
                  : strcmp(key, "family") == 0      ? &r->family
                  : strcmp(key, "description") == 0 ? &r->description
                  : strcmp(key, "pattern") == 0     ? &r->pattern
                  : strcmp(key, "prefilter") == 0   ? &r->prefilter
                                                    : NULL;
    if (text == &r->prefilter && r->prefilter != NULL)
        return vs_yaml_fail(ld, v, "a rule takes a prefilter or a lattice, not both");
    if (text != NULL) {
        const char *s = vs_yaml_scalar(v);
        if (s == NULL || s[0] == '\0')
            return vs_yaml_fail(ld, v, "%s: expected a non-empty string", key);
        free(*text);
        return (*text = strdup(s)) == NULL ? -ENOMEM : 0;
    }
    int e;
    double d;
    int rc = 0;
    if (strcmp(key, "severity") == 0) {
        if ((rc = enum_value(ld, v, key, severities, 5, &e)) == 0)
            r->severity = (enum vs_severity)e;
    } else if (strcmp(key, "confidence") == 0) {
        if ((rc = enum_value(ld, v, key, confidences, 3, &e)) == 0)
            r->confidence = (enum vs_confidence)e;
    } else if (strcmp(key, "flags") == 0) {
        rc = rule_flags(ld, v, &r->flags);
    } else if (strcmp(key, "keywords") == 0) {
        rc = strings(ld, v, true, &r->keywords, &r->nkeywords);
    } else if (strcmp(key, "secret_group") == 0) {
        if ((rc = number(ld, v, key, 0, 99, &d)) == 0)
            r->secret_group = (unsigned)d;
    } else if (strcmp(key, "validator") == 0) {
        const char *s = vs_yaml_scalar(v);
        if (s == NULL || vs_validator_parse(s, &r->validator) != 0)
            rc = vs_yaml_fail(ld, v, "validator: unknown '%s'", s != NULL ? s : "?");
    } else if (strcmp(key, "min_entropy") == 0) {
        rc = number(ld, v, key, 0, 8, &r->min_entropy);
    } else if (strcmp(key, "max_len") == 0) {
        if ((rc = number(ld, v, key, 1, 1 << 20, &d)) == 0)
            r->max_len = (size_t)d;
    } else if (strcmp(key, "lead") == 0) {
        if ((rc = number(ld, v, key, 1, 1 << 20, &d)) == 0)
            r->lead = (size_t)d;
    } else if (strcmp(key, "allow") == 0) {
        rc = allowlist(ld, v, &r->allow);
    } else if (strcmp(key, "detector") == 0) {
        static const char *const detectors[] = {"none", "hex-run", "base64-run", "dotted-run"};
        if ((rc = enum_value(ld, v, key, detectors, 4, &e)) == 0)
            r->detector = (enum detector)e;
    } else if (strcmp(key, "min_len") == 0 || strcmp(key, "window") == 0 ||
               strcmp(key, "min_span") == 0) {
        if ((rc = number(ld, v, key, 8, 1 << 20, &d)) == 0)
            *(key[0] == 'w' ? &r->window : key[4] == 's' ? &r->min_span : &r->min_len) = (size_t)d;
    } else if (strcmp(key, "lattice") == 0) {
        rc = r->prefilter != NULL ? vs_yaml_fail(ld, v, "a rule takes a prefilter or a lattice, not both")
                                  : lattice(ld, v, &r->prefilter);
    } else if (strcmp(key, "downgrade") == 0) {
        rc = regexes(ld, v, "downgrade regex", &r->downgrade, &r->ndowngrade);
    } else {
        rc = vs_yaml_fail(ld, v, "unknown rule key '%s'", key);
    }
    return rc;
}

static void rule_clear(struct rule *r)
{
    free(r->id);
    free(r->family);
    free(r->description);
    free(r->pattern);
    free(r->prefilter);
    strings_free(r->keywords, r->nkeywords);
    vs_allowlist_clear(&r->allow);
    regexes_free(r->downgrade, r->ndowngrade);
    if (r->re != NULL)
        pcre2_code_free(r->re);
    memset(r, 0, sizeof *r);
}

/* One rule; flags: the ruleset's, added to the rule's own. */
static int rule(struct vs_yaml_doc *ld, const yaml_node_t *n, struct rule *r, unsigned flags)
{
    memset(r, 0, sizeof *r);
    r->line = (int)n->start_mark.line + 1;
    r->severity = VS_SEV_MEDIUM;
    r->confidence = VS_CONF_MEDIUM;
    r->max_len = RULE_DEFAULT_MAX_LEN;
    r->flags = flags;
    if (n->type != YAML_MAPPING_NODE)
        return vs_yaml_fail(ld, n, "a rule must be a mapping");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *key = vs_yaml_scalar(yaml_document_get_node(ld->doc, p->key));
        int rc = key != NULL ? rule_field(ld, r, key, yaml_document_get_node(ld->doc, p->value))
                             : vs_yaml_fail(ld, n, "a rule key must be a string");
        if (rc)
            return rc;
    }
    /* Runs of an alphabet are judged by entropy alone; label runs are
     * only candidates that the pattern confirms. */
    bool judged = r->detector == DETECT_HEX_RUN || r->detector == DETECT_BASE64_RUN;
    if (r->id == NULL || r->family == NULL || (r->pattern == NULL) != judged)
        return vs_yaml_fail(ld, n, "a rule needs id, family and a pattern (detectors hex-run and "
                           "base64-run take none)");
    if (r->validator == VS_VALID_ENTROPY && r->min_entropy <= 0)
        return vs_yaml_fail(ld, n, "rule %s: validator entropy needs min_entropy", r->id);
    if (r->prefilter != NULL && r->detector != DETECT_NONE)
        return vs_yaml_fail(ld, n, "rule %s: a detector rule takes no prefilter", r->id);
    if (r->lead > r->max_len)
        return vs_yaml_fail(ld, n, "rule %s: lead %zu is longer than max_len %zu", r->id, r->lead,
                    r->max_len);
    if (r->lead > 0 && r->prefilter == NULL && r->detector == DETECT_NONE)
        return vs_yaml_fail(ld, n, "rule %s: lead needs a prefilter, a lattice or a detector", r->id);
    if (r->lead == 0)
        r->lead = r->max_len;
    if (r->detector == DETECT_DOTTED_RUN && r->min_len == 0)
        return vs_yaml_fail(ld, n, "rule %s: detector dotted-run needs min_len", r->id);
    if (judged) {
        if (r->min_len == 0 || r->window == 0 || r->min_entropy <= 0)
            return vs_yaml_fail(ld, n, "rule %s: a detector needs min_len, window and min_entropy", r->id);
        return 0;
    }
    char msg[300];
    if ((r->re = vs_rule_pcre(r->pattern, r->flags, msg, sizeof msg)) == NULL)
        return vs_yaml_fail(ld, n, "rule %s: pattern %s", r->id, msg);
    uint32_t groups = 0;
    pcre2_pattern_info(r->re, PCRE2_INFO_CAPTURECOUNT, &groups);
    if (r->secret_group > groups)
        return vs_yaml_fail(ld, n, "rule %s: secret_group %u but the pattern has %u groups", r->id,
                    r->secret_group, groups);
    return 0;
}

/* One Hyperscan database of every pattern rule (expression id = the
 * rule's index; detector rules have none). */
static int compile_hs(struct vs_yaml_doc *ld, vs_ruleset *rs)
{
    const char **exprs = calloc(rs->n, sizeof *exprs);
    unsigned *flags = calloc(rs->n, sizeof *flags), *ids = calloc(rs->n, sizeof *ids);
    int rc = exprs == NULL || flags == NULL || ids == NULL ? -ENOMEM : 0;
    rs->detectors = calloc(rs->n, sizeof *rs->detectors);
    if (rs->detectors == NULL)
        rc = -ENOMEM;
    unsigned k = 0;
    for (size_t i = 0; i < rs->n && rc == 0; i++) {
        const struct rule *r = &rs->rules[i];
        if (r->max_len > rs->longest)
            rs->longest = r->max_len;
        if (r->detector != DETECT_NONE) {
            size_t shortest = vs__detect_min_span(r);
            if (rs->detect_min_len == 0 || shortest < rs->detect_min_len)
                rs->detect_min_len = shortest;
            rs->detectors[rs->ndetectors++] = i;
            continue;
        }
        exprs[k] = r->prefilter != NULL ? r->prefilter : r->pattern;
        ids[k] = (unsigned)i;
        flags[k++] = (r->flags & RULE_CASELESS ? HS_FLAG_CASELESS : 0) |
                     (r->flags & RULE_DOTALL ? HS_FLAG_DOTALL : 0) |
                     (r->flags & RULE_MULTILINE ? HS_FLAG_MULTILINE : 0);
    }
    hs_compile_error_t *ce = NULL;
    if (rc == 0 && k > 0 &&
        hs_compile_multi(exprs, flags, ids, k, HS_MODE_BLOCK, NULL, &rs->db, &ce) != HS_SUCCESS) {
        int which = ce != NULL && ce->expression >= 0 ? (int)ids[ce->expression] : -1;
        const yaml_node_t *none = NULL;
        if (which >= 0 && (size_t)which < rs->n)
            rc = vs_yaml_fail(ld, none, "rule %s (line %d): hyperscan: %s", rs->rules[which].id,
                      rs->rules[which].line, ce->message);
        else
            rc = vs_yaml_fail(ld, none, "hyperscan: %s", ce != NULL ? ce->message : "compile failed");
        hs_free_compile_error(ce);
    }
    free(exprs);
    free(flags);
    free(ids);
    return rc;
}

static int rules_list(struct vs_yaml_doc *ld, const yaml_node_t *n, vs_ruleset *rs, unsigned flags)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return vs_yaml_fail(ld, n, "rules: expected a list");
    size_t cap = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cap == 0)
        return vs_yaml_fail(ld, n, "rules: empty");
    if ((rs->rules = calloc(cap, sizeof *rs->rules)) == NULL)
        return -ENOMEM;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        const yaml_node_t *e = yaml_document_get_node(ld->doc, *it);
        struct rule *r = &rs->rules[rs->n];
        int rc = rule(ld, e, r, flags);
        if (rc) {
            rule_clear(r);
            return rc;
        }
        rs->n++;
        for (size_t i = 0; i + 1 < rs->n; i++)
            if (strcmp(rs->rules[i].id, r->id) == 0)
                return vs_yaml_fail(ld, e, "rule id %s is used twice", r->id);
        uint32_t groups = 0;
        if (r->re != NULL)
            pcre2_pattern_info(r->re, PCRE2_INFO_CAPTURECOUNT, &groups);
        if (groups > rs->max_groups)
            rs->max_groups = groups;
    }
    return 0;
}

/* The document: a vs_yaml_reader (rs: the vs_ruleset being read). */
static int top_level(struct vs_yaml_doc *ld, void *arg)
{
    vs_ruleset *rs = arg;
    unsigned flags = 0;
    const yaml_node_t *root = yaml_document_get_root_node(ld->doc);
    if (root == NULL || root->type != YAML_MAPPING_NODE)
        return vs_yaml_fail(ld, root, "expected a mapping with ruleset and rules");
    const yaml_node_t *rules = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
        const char *key = vs_yaml_scalar(k);
        int rc = 0;
        if (key != NULL && strcmp(key, "ruleset") == 0 && vs_yaml_scalar(v) != NULL)
            rc = (rs->name = strdup(vs_yaml_scalar(v))) == NULL ? -ENOMEM : 0;
        else if (key != NULL && strcmp(key, "allow") == 0)
            rc = allowlist(ld, v, &rs->allow);
        else if (key != NULL && strcmp(key, "flags") == 0)
            rc = rule_flags(ld, v, &flags);
        else if (key != NULL && strcmp(key, "rules") == 0)
            rules = v;
        else
            rc = vs_yaml_fail(ld, k, "unknown key '%s'", key != NULL ? key : "?");
        if (rc)
            return rc;
    }
    if (rs->name == NULL || rules == NULL)
        return vs_yaml_fail(ld, root, "ruleset and rules are required");
    int rc = rules_list(ld, rules, rs, flags);
    return rc ? rc : compile_hs(ld, rs);
}

/* A rule file's bound: rulesets are kilobytes; this keeps a hostile or
 * mistaken file from taking the memory. */
#define RULES_FILE_MAX ((size_t)64 << 20)

/* Reads a ruleset with vs_yaml_parse (yaml != NULL) or vs_yaml_load. */
static int ruleset_read(const char *yaml, size_t len, const char *name, const char *path,
                        vs_ruleset **out, char *err, size_t errlen)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    vs_ruleset *rs = calloc(1, sizeof *rs);
    if (rs == NULL)
        return -ENOMEM;
    int rc = path != NULL ? vs_yaml_load(path, RULES_FILE_MAX, top_level, rs, err, errlen)
                          : vs_yaml_parse(yaml, len, name != NULL ? name : "rules", RULES_FILE_MAX,
                                          top_level, rs, err, errlen);
    if (rc) {
        vs_ruleset_free(rs);
        return rc;
    }
    *out = rs;
    return 0;
}

int vs_ruleset_parse(const char *yaml, size_t len, const char *name, vs_ruleset **out, char *err,
                     size_t errlen)
{
    return yaml == NULL ? -EINVAL : ruleset_read(yaml, len, name, NULL, out, err, errlen);
}

int vs_ruleset_load(const char *path, vs_ruleset **out, char *err, size_t errlen)
{
    return path == NULL ? -EINVAL : ruleset_read(NULL, 0, NULL, path, out, err, errlen);
}

void vs_ruleset_free(vs_ruleset *rs)
{
    if (rs == NULL)
        return;
    for (size_t i = 0; i < rs->n; i++)
        rule_clear(&rs->rules[i]);
    free(rs->rules);
    vs_allowlist_clear(&rs->allow);
    if (rs->db != NULL)
        hs_free_database(rs->db);
    free(rs->detectors);
    free(rs->name);
    free(rs);
}

const char *vs_ruleset_name(const vs_ruleset *rs)
{
    return rs != NULL ? rs->name : NULL;
}

size_t vs_ruleset_size(const vs_ruleset *rs)
{
    return rs != NULL ? rs->n : 0;
}

int vs_ruleset_rule(const vs_ruleset *rs, size_t i, const char **id, const char **family,
                    const char **description, enum vs_severity *severity)
{
    if (rs == NULL || i >= rs->n)
        return -EINVAL;
    const struct rule *r = &rs->rules[i];
    if (id != NULL)
        *id = r->id;
    if (family != NULL)
        *family = r->family;
    if (description != NULL)
        *description = r->description != NULL ? r->description : r->id;
    if (severity != NULL)
        *severity = r->severity;
    return 0;
}
