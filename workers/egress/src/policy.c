/*
 * policy.c - the egress policy file (YAML) into immutable policies, and
 * the choice of an agent's policy.
 *
 * The file's shape (unknown keys, duplicate keys, wrong types and values
 * out of range are errors with their line):
 *   policies:
 *     - name: default                  (required, unique)
 *       agents: ["*"]                  (required: agent ids or groups; "*" in one policy at most)
 *       hosts: [example.com, "*.example.org", "**.cdn.example.net", 203.0.113.7]
 *                                      (required; [] denies every host; vs/egress_policy.h
 *                                       says how entries match)
 *       ports: [443]                   default [443]; 1-65535
 *       schemes: [https]               default [https]; http, https
 *       methods: [GET]                 default [GET]; GET HEAD POST PUT PATCH DELETE OPTIONS
 *       max_request_bytes: 65536       1 .. 1 GiB
 *       max_response_bytes: 8388608    1 .. 1 GiB
 *       timeout_ms: 10000              1 .. 600000
 *       rate: {requests_per_min: 60, bytes_per_min: 10485760, max_concurrent: 4}
 *       redirects: refuse              refuse | follow
 *       suspicious: deliver            deliver | deny
 *       allow_loopback: false          true only in test policies
 * The file is read through vs/yaml_doc.h (libyaml's document API, errors
 * as "file:line: reason"), like the scanners' rules. Numbers are plain decimal integers (no sign, no
 * fraction, no suffix), booleans are true/false: a policy is security
 * configuration, and YAML's looser readings ("yes", "0x1bb") are refused
 * rather than guessed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "egress_internal.h"
#include "vs/yaml_doc.h"

#define MAX_POLICIES 1024
#define MAX_LIST 65536 /* entries of one list (hosts, agents, ports) */

static size_t seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static const yaml_node_t *seq_at(struct vs_yaml_doc *ld, const yaml_node_t *n, size_t i)
{
    return yaml_document_get_node(ld->doc, n->data.sequence.items.start[i]);
}

/* A decimal integer from lo to hi. */
static int integer(struct vs_yaml_doc *ld, const yaml_node_t *v, const char *what, uint64_t lo,
                   uint64_t hi, uint64_t *out)
{
    const char *s = vs_yaml_scalar(v);
    uint64_t x = 0;
    bool ok = s != NULL && s[0] != '\0' && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    for (const char *c = s; ok && *c != '\0'; c++) {
        ok = *c >= '0' && *c <= '9' && x <= (UINT64_MAX - 9) / 10;
        x = x * 10 + (uint64_t)(*c - '0');
    }
    if (!ok || x < lo || x > hi)
        return vs_yaml_fail(ld, v, "%s: expected an integer from %llu to %llu", what,
                    (unsigned long long)lo, (unsigned long long)hi);
    *out = x;
    return 0;
}

static int boolean(struct vs_yaml_doc *ld, const yaml_node_t *v, const char *what, bool *out)
{
    const char *s = vs_yaml_scalar(v);
    if (s != NULL && strcmp(s, "true") == 0)
        *out = true;
    else if (s != NULL && strcmp(s, "false") == 0)
        *out = false;
    else
        return vs_yaml_fail(ld, v, "%s: expected true or false", what);
    return 0;
}

static int choice(struct vs_yaml_doc *ld, const yaml_node_t *v, const char *what, const char *a,
                  const char *b, int *out)
{
    const char *s = vs_yaml_scalar(v);
    if (s != NULL && strcmp(s, a) == 0)
        *out = 0;
    else if (s != NULL && strcmp(s, b) == 0)
        *out = 1;
    else
        return vs_yaml_fail(ld, v, "%s: expected %s or %s", what, a, b);
    return 0;
}

/* A list node: a sequence of at most MAX_LIST scalars. */
static int list(struct vs_yaml_doc *ld, const yaml_node_t *v, const char *what)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return vs_yaml_fail(ld, v, "%s: expected a list", what);
    if (seq_len(v) > MAX_LIST)
        return vs_yaml_fail(ld, v, "%s: more than %d entries", what, MAX_LIST);
    for (size_t i = 0; i < seq_len(v); i++)
        if (vs_yaml_scalar(seq_at(ld, v, i)) == NULL)
            return vs_yaml_fail(ld, seq_at(ld, v, i), "%s: expected a string", what);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort and remove duplicates. */
static void sort_unique(char **v, size_t *n)
{
    if (*n < 2)
        return;
    qsort(v, *n, sizeof *v, cmp_str);
    size_t k = 1;
    for (size_t i = 1; i < *n; i++) {
        if (strcmp(v[i], v[k - 1]) == 0)
            free(v[i]);
        else
            v[k++] = v[i];
    }
    *n = k;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int agent_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (strcmp(s, "*") == 0)
        return 1;
    if (n == 0 || n > VS_EGRESS_AGENT_MAX)
        return 0;
    for (const char *c = s; *c != '\0'; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_' || *c == '.' || *c == ':' || *c == '@'))
            return 0;
    return 1;
}

static int agents(struct vs_yaml_doc *ld, const yaml_node_t *v, struct vs_egress_policy *p)
{
    int rc = list(ld, v, "agents");
    if (rc)
        return rc;
    if (seq_len(v) == 0)
        return vs_yaml_fail(ld, v, "agents: expected at least one agent id, group or \"*\"");
    if ((p->agents = calloc(seq_len(v), sizeof *p->agents)) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < seq_len(v); i++) {
        const char *s = vs_yaml_scalar(seq_at(ld, v, i));
        if (!agent_name_ok(s))
            return vs_yaml_fail(ld, seq_at(ld, v, i), "agents: '%.80s' is not an agent id or group "
                        "([A-Za-z0-9_.:@-], 1-%d characters) or \"*\"", s, VS_EGRESS_AGENT_MAX);
        if (strcmp(s, "*") == 0)
            p->any_agent = true;
        if ((p->agents[p->nagents++] = strdup(s)) == NULL)
            return -ENOMEM;
    }
    return 0;
}

static int hosts(struct vs_yaml_doc *ld, const yaml_node_t *v, struct vs_egress_policy *p)
{
    int rc = list(ld, v, "hosts");
    if (rc)
        return rc;
    size_t n = seq_len(v);
    p->exact = calloc(n ? n : 1, sizeof(char *));
    p->one = calloc(n ? n : 1, sizeof(char *));
    p->deep = calloc(n ? n : 1, sizeof(char *));
    if (p->exact == NULL || p->one == NULL || p->deep == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *e = seq_at(ld, v, i);
        const char *s = vs_yaml_scalar(e);
        char ***into = &p->exact;
        size_t *count = &p->nexact;
        if (strncmp(s, "**.", 3) == 0) {
            s += 3;
            into = &p->deep;
            count = &p->ndeep;
        } else if (strncmp(s, "*.", 2) == 0) {
            s += 2;
            into = &p->one;
            count = &p->none;
        }
        if (strchr(s, '*') != NULL)
            return vs_yaml_fail(ld, e, "hosts: '%.80s': a wildcard is the whole leftmost label, "
                        "\"*.\" (one label) or \"**.\" (any number)", vs_yaml_scalar(e));
        char norm[VS_EGRESS_HOST_MAX + 1];
        enum host_kind kind;
        const char *why = vs_egress_host_normalize(s, strlen(s), norm, &kind);
        if (why != NULL)
            return vs_yaml_fail(ld, e, "hosts: '%.80s': %s (ASCII letters, digits and '-' per label; "
                        "IDNs in punycode; IP literals canonical)", vs_yaml_scalar(e),
                        strcmp(why, VS_EGRESS_HOST_NOT_ASCII) == 0 ? "not ASCII" : "not a host");
        if (into != &p->exact && kind != HOST_NAME)
            return vs_yaml_fail(ld, e, "hosts: '%.80s': a wildcard cannot cover IP addresses", vs_yaml_scalar(e));
        if (into != &p->exact && strchr(norm, '.') == NULL)
            return vs_yaml_fail(ld, e, "hosts: '%.80s': a wildcard needs at least two labels after it "
                        "(it would cover a whole top-level domain)", vs_yaml_scalar(e));
        if (((*into)[(*count)++] = strdup(norm)) == NULL)
            return -ENOMEM;
    }
    sort_unique(p->exact, &p->nexact);
    sort_unique(p->one, &p->none);
    sort_unique(p->deep, &p->ndeep);
    return 0;
}

static int ports(struct vs_yaml_doc *ld, const yaml_node_t *v, struct vs_egress_policy *p)
{
    if (v->type != YAML_SEQUENCE_NODE || seq_len(v) == 0)
        return vs_yaml_fail(ld, v, "ports: expected a non-empty list of port numbers");
    if (seq_len(v) > MAX_LIST)
        return vs_yaml_fail(ld, v, "ports: more than %d entries", MAX_LIST);
    free(p->ports);
    if ((p->ports = calloc(seq_len(v), sizeof *p->ports)) == NULL)
        return -ENOMEM;
    p->nports = 0;
    for (size_t i = 0; i < seq_len(v); i++) {
        uint64_t x;
        int rc = integer(ld, seq_at(ld, v, i), "ports", 1, 65535, &x);
        if (rc)
            return rc;
        p->ports[p->nports++] = (uint16_t)x;
    }
    return 0;
}

/* The names a list may hold, bit i for names[i]. */
struct name_set {
    const char *what;
    const char *const *names;
    size_t n;
    const char *expected; /* for the refusal */
};

static const char *const scheme_names[] = {"http", "https"}; /* SCHEME_HTTP, SCHEME_HTTPS */
static const char *const method_names[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
static const struct name_set schemes_set = {"schemes", scheme_names, 2, "http or https"};
static const struct name_set methods_set = {
    "methods", method_names, sizeof method_names / sizeof method_names[0],
    "one of GET HEAD POST PUT PATCH DELETE OPTIONS (upper case)"};

/* The bit of name in set (0: not in it). */
static unsigned name_bit(const struct name_set *set, const char *name)
{
    for (size_t i = 0; name != NULL && i < set->n; i++)
        if (strcmp(name, set->names[i]) == 0)
            return 1u << i;
    return 0;
}

unsigned vs_egress_method_bit(const char *m)
{
    return name_bit(&methods_set, m);
}

/* A non-empty list of names of set into *bits. */
static int name_list(struct vs_yaml_doc *ld, const yaml_node_t *v, const struct name_set *set,
                     unsigned *bits)
{
    int rc = list(ld, v, set->what);
    if (rc)
        return rc;
    if (seq_len(v) == 0)
        return vs_yaml_fail(ld, v, "%s: expected a non-empty list", set->what);
    *bits = 0;
    for (size_t i = 0; i < seq_len(v); i++) {
        const char *s = vs_yaml_scalar(seq_at(ld, v, i));
        unsigned bit = name_bit(set, s);
        if (bit == 0)
            return vs_yaml_fail(ld, seq_at(ld, v, i), "%s: '%.40s': expected %s", set->what, s,
                                set->expected);
        *bits |= bit;
    }
    return 0;
}

_Static_assert(SCHEME_HTTP == 1u << 0 && SCHEME_HTTPS == 1u << 1, "scheme_names' order");

static int rate(struct vs_yaml_doc *ld, const yaml_node_t *v, struct vs_egress_rate_limits *r)
{
    if (v->type != YAML_MAPPING_NODE)
        return vs_yaml_fail(ld, v, "rate: expected a mapping");
    unsigned seen = 0;
    for (yaml_node_pair_t *kv = v->data.mapping.pairs.start; kv < v->data.mapping.pairs.top; kv++) {
        const yaml_node_t *k = yaml_document_get_node(ld->doc, kv->key);
        const yaml_node_t *e = yaml_document_get_node(ld->doc, kv->value);
        const char *key = vs_yaml_scalar(k);
        static const char *const keys[] = {"requests_per_min", "bytes_per_min", "max_concurrent"};
        unsigned which = 3;
        for (unsigned i = 0; key != NULL && i < 3; i++)
            if (strcmp(key, keys[i]) == 0)
                which = i;
        if (which == 3)
            return vs_yaml_fail(ld, k, "rate: unknown key '%.40s'", key != NULL ? key : "?");
        if (seen & (1u << which))
            return vs_yaml_fail(ld, k, "rate: duplicate key '%s'", key);
        seen |= 1u << which;
        uint64_t x;
        int rc = which == 0   ? integer(ld, e, "rate.requests_per_min", 1, 1000000, &x)
                 : which == 1 ? integer(ld, e, "rate.bytes_per_min", 1, 1ull << 40, &x)
                              : integer(ld, e, "rate.max_concurrent", 1, 1024, &x);
        if (rc)
            return rc;
        if (which == 0)
            r->requests_per_min = x;
        else if (which == 1)
            r->bytes_per_min = x;
        else
            r->max_concurrent = (uint32_t)x;
    }
    return 0;
}

static const char *const policy_keys[] = {
    "name", "agents", "hosts", "ports", "schemes", "methods", "max_request_bytes",
    "max_response_bytes", "timeout_ms", "rate", "redirects", "suspicious", "allow_loopback",
};
#define NKEYS (sizeof policy_keys / sizeof policy_keys[0])

static void policy_defaults(struct vs_egress_policy *p)
{
    p->schemes = SCHEME_HTTPS;
    p->methods = M_GET;
    p->lim = (struct vs_egress_limits){
        .max_request_bytes = 65536,
        .max_response_bytes = 8u << 20,
        .timeout_ms = 10000,
        .rate = {.requests_per_min = 60, .bytes_per_min = 10u << 20, .max_concurrent = 4},
        .redirects = VS_EGRESS_REDIRECTS_REFUSE,
        .suspicious = VS_EGRESS_SUSPICIOUS_DELIVER,
        .allow_loopback = false,
    };
}

static int policy(struct vs_yaml_doc *ld, const yaml_node_t *n, struct vs_egress_policy *p)
{
    if (n->type != YAML_MAPPING_NODE)
        return vs_yaml_fail(ld, n, "policies: expected a mapping per policy");
    policy_defaults(p);
    unsigned seen = 0;
    int rc = 0;
    for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top && !rc;
         kv++) {
        const yaml_node_t *k = yaml_document_get_node(ld->doc, kv->key);
        const yaml_node_t *v = yaml_document_get_node(ld->doc, kv->value);
        const char *key = vs_yaml_scalar(k);
        unsigned which = NKEYS;
        for (unsigned i = 0; key != NULL && i < NKEYS; i++)
            if (strcmp(key, policy_keys[i]) == 0)
                which = i;
        if (which == NKEYS)
            return vs_yaml_fail(ld, k, "unknown policy key '%.40s'", key != NULL ? key : "?");
        if (seen & (1u << which))
            return vs_yaml_fail(ld, k, "duplicate key '%s'", key);
        seen |= 1u << which;
        uint64_t x;
        int e;
        switch (which) {
        case 0: {
            const char *s = vs_yaml_scalar(v);
            if (s == NULL || !agent_name_ok(s) || strcmp(s, "*") == 0)
                return vs_yaml_fail(ld, v, "name: expected a name ([A-Za-z0-9_.:@-], 1-%d characters)",
                            VS_EGRESS_AGENT_MAX);
            rc = (p->name = strdup(s)) == NULL ? -ENOMEM : 0;
            break;
        }
        case 1: rc = agents(ld, v, p); break;
        case 2: rc = hosts(ld, v, p); break;
        case 3: rc = ports(ld, v, p); break;
        case 4: rc = name_list(ld, v, &schemes_set, &p->schemes); break;
        case 5: rc = name_list(ld, v, &methods_set, &p->methods); break;
        case 6:
            if ((rc = integer(ld, v, key, 1, 1ull << 30, &x)) == 0)
                p->lim.max_request_bytes = x;
            break;
        case 7:
            if ((rc = integer(ld, v, key, 1, 1ull << 30, &x)) == 0)
                p->lim.max_response_bytes = x;
            break;
        case 8:
            if ((rc = integer(ld, v, key, 1, 600000, &x)) == 0)
                p->lim.timeout_ms = (uint32_t)x;
            break;
        case 9: rc = rate(ld, v, &p->lim.rate); break;
        case 10:
            if ((rc = choice(ld, v, key, "refuse", "follow", &e)) == 0)
                p->lim.redirects = e ? VS_EGRESS_REDIRECTS_FOLLOW : VS_EGRESS_REDIRECTS_REFUSE;
            break;
        case 11:
            if ((rc = choice(ld, v, key, "deliver", "deny", &e)) == 0)
                p->lim.suspicious = e ? VS_EGRESS_SUSPICIOUS_DENY : VS_EGRESS_SUSPICIOUS_DELIVER;
            break;
        default: rc = boolean(ld, v, key, &p->lim.allow_loopback); break;
        }
    }
    if (rc)
        return rc;
    if (!(seen & 1u) || !(seen & 2u) || !(seen & 4u))
        return vs_yaml_fail(ld, n, "a policy needs name, agents and hosts");
    if (p->ports == NULL) {
        if ((p->ports = malloc(sizeof *p->ports)) == NULL)
            return -ENOMEM;
        p->ports[0] = 443;
        p->nports = 1;
    }
    return 0;
}

static void policy_clear(struct vs_egress_policy *p)
{
    free(p->name);
    strv_free(p->agents, p->nagents);
    strv_free(p->exact, p->nexact);
    strv_free(p->one, p->none);
    strv_free(p->deep, p->ndeep);
    free(p->ports);
}

/* The document: a vs_yaml_reader (ps: the policies being read). */
static int top_level(struct vs_yaml_doc *ld, void *arg)
{
    vs_egress_policies *ps = arg;
    const yaml_node_t *root = yaml_document_get_root_node(ld->doc);
    if (root == NULL)
        return vs_yaml_fail(ld, NULL, "empty policy file");
    if (root->type != YAML_MAPPING_NODE)
        return vs_yaml_fail(ld, root, "expected a mapping with 'policies'");
    const yaml_node_t *list_node = NULL;
    for (yaml_node_pair_t *kv = root->data.mapping.pairs.start; kv < root->data.mapping.pairs.top;
         kv++) {
        const yaml_node_t *k = yaml_document_get_node(ld->doc, kv->key);
        const char *key = vs_yaml_scalar(k);
        if (key == NULL || strcmp(key, "policies") != 0)
            return vs_yaml_fail(ld, k, "unknown key '%.40s'", key != NULL ? key : "?");
        if (list_node != NULL)
            return vs_yaml_fail(ld, k, "duplicate key 'policies'");
        list_node = yaml_document_get_node(ld->doc, kv->value);
    }
    if (list_node == NULL)
        return vs_yaml_fail(ld, root, "'policies' is required");
    if (list_node->type != YAML_SEQUENCE_NODE || seq_len(list_node) == 0)
        return vs_yaml_fail(ld, list_node, "policies: expected a non-empty list");
    if (seq_len(list_node) > MAX_POLICIES)
        return vs_yaml_fail(ld, list_node, "policies: more than %d", MAX_POLICIES);
    if ((ps->v = calloc(seq_len(list_node), sizeof *ps->v)) == NULL)
        return -ENOMEM;
    ps->any = SIZE_MAX;
    for (size_t i = 0; i < seq_len(list_node); i++) {
        const yaml_node_t *n = seq_at(ld, list_node, i);
        struct vs_egress_policy *p = &ps->v[ps->n++];
        int rc = policy(ld, n, p);
        if (rc)
            return rc;
        for (size_t j = 0; j + 1 < ps->n; j++)
            if (strcmp(ps->v[j].name, p->name) == 0)
                return vs_yaml_fail(ld, n, "policy '%s' is defined twice", p->name);
        if (p->any_agent) {
            if (ps->any != SIZE_MAX)
                return vs_yaml_fail(ld, n, "policy '%s': only one policy may apply to \"*\" (policy '%s' "
                            "does)", p->name, ps->v[ps->any].name);
            ps->any = i;
        }
    }
    if (ps->any == SIZE_MAX)
        ps->any = ps->n;
    return 0;
}

/* Reads a policy file with vs_yaml_parse (yaml != NULL) or vs_yaml_load. */
static int policies_read(const char *yaml, size_t len, const char *name, const char *path,
                         vs_egress_policies **out, char *err, size_t errlen)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    vs_egress_policies *ps = calloc(1, sizeof *ps);
    if (ps == NULL)
        return -ENOMEM;
    int rc = path != NULL
                 ? vs_yaml_load(path, VS_EGRESS_POLICY_FILE_MAX, top_level, ps, err, errlen)
                 : vs_yaml_parse(yaml, len, name != NULL ? name : "policy",
                                 VS_EGRESS_POLICY_FILE_MAX, top_level, ps, err, errlen);
    if (rc) {
        vs_egress_policies_free(ps);
        return rc;
    }
    *out = ps;
    return 0;
}

int vs_egress_policies_parse(const char *yaml, size_t len, const char *name,
                             vs_egress_policies **out, char *err, size_t errlen)
{
    return yaml == NULL ? -EINVAL : policies_read(yaml, len, name, NULL, out, err, errlen);
}

int vs_egress_policies_load(const char *path, vs_egress_policies **out, char *err, size_t errlen)
{
    return path == NULL ? -EINVAL : policies_read(NULL, 0, NULL, path, out, err, errlen);
}

void vs_egress_policies_free(vs_egress_policies *ps)
{
    if (ps == NULL)
        return;
    for (size_t i = 0; i < ps->n; i++)
        policy_clear(&ps->v[i]);
    free(ps->v);
    free(ps);
}

size_t vs_egress_policies_count(const vs_egress_policies *ps)
{
    return ps != NULL ? ps->n : 0;
}

const vs_egress_policy *vs_egress_policies_at(const vs_egress_policies *ps, size_t i)
{
    return ps != NULL && i < ps->n ? &ps->v[i] : NULL;
}

const vs_egress_policy *vs_egress_policy_for(const vs_egress_policies *ps, const char *agent,
                                             const char *const *groups, size_t ngroups)
{
    if (ps == NULL || agent == NULL)
        return NULL;
    for (size_t i = 0; i < ps->n; i++) {
        const struct vs_egress_policy *p = &ps->v[i];
        for (size_t a = 0; a < p->nagents; a++) {
            if (strcmp(p->agents[a], "*") == 0)
                continue; /* the last resort, below */
            if (strcmp(p->agents[a], agent) == 0)
                return p;
            for (size_t g = 0; g < ngroups; g++)
                if (groups[g] != NULL && strcmp(p->agents[a], groups[g]) == 0)
                    return p;
        }
    }
    return ps->any < ps->n ? &ps->v[ps->any] : NULL;
}

const char *vs_egress_policy_name(const vs_egress_policy *p)
{
    return p != NULL ? p->name : NULL;
}

const struct vs_egress_limits *vs_egress_policy_limits(const vs_egress_policy *p)
{
    return p != NULL ? &p->lim : NULL;
}
