/*
 * cmd_keys.c - `vsctl keys`: the verifier keys (C2SP vkeys) of the audit
 * log, and `vsctl keys init-audit PATH` to create auditd's signing key.
 *
 * A vkey ("NAME+HASH+BASE64") is what verifiers are configured with
 * (`vsctl audit verify --vkey`): it is printed from the key files the
 * operator holds (--key), which is the trustworthy way to get it. Without
 * --key the command lists the vkeys auditd published with its checkpoints,
 * marked as such: those come from the bus and are only for discovery, to
 * be compared with a copy obtained out of band.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs/checkpoint.h"
#include "vs/keys.h"
#include "vsctl.h"

#define DEFAULT_NAME "vibeshield/audit"
#define MAX_SEEN 64

static void keys_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl keys [--key FILE]... [--name NAME]\n"
            "       vsctl keys init-audit PATH [--name NAME]\n"
            "       vsctl keys init-box PATH\n"
            "Verifier keys of the audit log (NAME+HASH+BASE64, the C2SP vkey format that\n"
            "`vsctl audit verify --vkey` takes).\n\n"
            "  --key FILE     print the vkey of this Ed25519 key file (auditd.key,\n"
            "                 auditd.next_key); repeatable\n"
            "  (no --key)     list the vkeys auditd published with its checkpoints: for\n"
            "                 discovery only, compare them with a copy you trust\n"
            "  --name NAME    the key name (default " DEFAULT_NAME ": auditd signs under its\n"
            "                 auditd.origin)\n"
            "  init-audit PATH  create a new signing key file (0600, never overwritten) and\n"
            "                 print its vkey: set auditd.key (or auditd.next_key to rotate)\n"
            "  init-box PATH  create a new X25519 box key file (0600, never overwritten) and\n"
            "                 print its public half in hex: a pool key (intake/scanner,\n"
            "                 launcher) or a requester's key; `vsctl seal --to` takes it\n\n"
            VSCTL_COMMON_HELP);
}

static int print_key_file(const char *path, const char *name)
{
    vs_signkey *k = vsctl_load_signkey(path);
    if (k == NULL)
        return -EINVAL;
    char vkey[VS_VKEY_MAX];
    int rc = vs_vkey_format(name, vs_signkey_public(k), vkey, sizeof(vkey));
    vs_signkey_free(k);
    if (rc < 0) {
        vsctl_err("--name: '%s' cannot name a key (no spaces, no '+')", name);
        return rc;
    }
    printf("%s\n", vkey);
    return 0;
}

struct seen {
    char vkeys[MAX_SEEN][VS_VKEY_MAX];
    uint64_t last_size[MAX_SEEN];
    size_t n;
};

static int collect_vkeys(const Vs__V1__Checkpoint *cp, void *arg)
{
    struct seen *s = arg;
    for (size_t i = 0; i < cp->n_vkeys; i++) {
        struct vs_vkey v;
        if (vs_vkey_parse(cp->vkeys[i], &v) < 0)
            continue; /* hostile or foreign input: not shown */
        size_t j = 0;
        while (j < s->n && strcmp(s->vkeys[j], cp->vkeys[i]) != 0)
            j++;
        if (j == s->n) {
            if (s->n == MAX_SEEN)
                continue;
            snprintf(s->vkeys[s->n++], VS_VKEY_MAX, "%s", cp->vkeys[i]);
        }
        s->last_size[j] = cp->tree_size;
    }
    return 0;
}

static int list_published(struct vsctl *ctx)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    int result = VSCTL_FAIL;
    static struct seen s;
    s.n = 0;
    if (vsctl_connect(ctx, &loop, &bus) < 0)
        goto out;
    int rc = vsctl_read_checkpoints(bus, collect_vkeys, &s);
    if (rc < 0) {
        vsctl_err("cannot read the published checkpoints: %s", strerror(-rc));
        goto out;
    }
    if (s.n == 0) {
        vsctl_err("no checkpoint has been published yet (is auditd running?)");
        goto out;
    }
    for (size_t i = 0; i < s.n; i++)
        printf("%s  (published; last checkpoint signed at size %llu)\n", s.vkeys[i],
               (unsigned long long)s.last_size[i]);
    fprintf(stderr, "these keys come from the bus: compare them with the output of "
                    "`vsctl keys --key FILE` on the auditd host before trusting one\n");
    result = VSCTL_OK;
out:
    vs_bus_free(bus);
    uv_loop_close(&loop);
    return result;
}

static int init_audit(const char *path, const char *name)
{
    if (!vs_note_name_valid(name)) {
        vsctl_err("--name: '%s' cannot name a key (no spaces, no '+')", name);
        return VSCTL_USAGE;
    }
    vs_signkey *k = vsctl_create_signkey(path);
    if (k == NULL)
        return VSCTL_FAIL;
    char vkey[VS_VKEY_MAX];
    vs_vkey_format(name, vs_signkey_public(k), vkey, sizeof(vkey));
    vs_signkey_free(k);
    printf("%s\n", vkey);
    fprintf(stderr, "created %s: set auditd.key (or auditd.next_key to rotate) to it, and give "
                    "verifiers the vkey above\n", path);
    return fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
}

static int init_box(const char *path)
{
    vs_boxkey *k = NULL;
    int rc = vs_boxkey_new(&k);
    if (rc == 0)
        rc = vs_boxkey_save(k, path);
    if (rc < 0) {
        vsctl_key_not_created(path, rc);
        vs_boxkey_free(k);
        return VSCTL_FAIL;
    }
    char hex[2 * VS_BOX_PUBLICKEY_LEN + 1];
    sodium_bin2hex(hex, sizeof hex, vs_boxkey_public(k), VS_BOX_PUBLICKEY_LEN);
    vs_boxkey_free(k);
    printf("%s\n", hex);
    return fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
}

int cmd_keys(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"key", required_argument, NULL, 'k'},
        {"name", required_argument, NULL, 'n'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *keys[16];
    size_t nkeys = 0;
    const char *name = DEFAULT_NAME;
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'k':
            if (nkeys == sizeof(keys) / sizeof(keys[0])) {
                vsctl_err("at most 16 --key options");
                return VSCTL_USAGE;
            }
            keys[nkeys++] = optarg;
            break;
        case 'n': name = optarg; break;
        case 'h': keys_usage(stdout); return VSCTL_OK;
        default: keys_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (optind < argc && strcmp(argv[optind], "init-audit") == 0) {
        if (argc - optind != 2 || nkeys > 0) {
            vsctl_err("usage: vsctl keys init-audit PATH [--name NAME]");
            return VSCTL_USAGE;
        }
        return init_audit(argv[optind + 1], name);
    }
    if (optind < argc && strcmp(argv[optind], "init-box") == 0) {
        if (argc - optind != 2 || nkeys > 0) {
            vsctl_err("usage: vsctl keys init-box PATH");
            return VSCTL_USAGE;
        }
        return init_box(argv[optind + 1]);
    }
    if (optind != argc) {
        vsctl_err("unknown keys argument '%s' (see --help)", argv[optind]);
        return VSCTL_USAGE;
    }
    if (!vs_note_name_valid(name)) {
        vsctl_err("--name: '%s' cannot name a key (no spaces, no '+')", name);
        return VSCTL_USAGE;
    }
    if (nkeys == 0)
        return list_published(ctx);
    for (size_t i = 0; i < nkeys; i++)
        if (print_key_file(keys[i], name) < 0)
            return VSCTL_FAIL;
    return fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
}
