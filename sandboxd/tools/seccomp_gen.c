/*
 * seccomp_gen.c - vs-seccomp-gen, the build-time compiler of the seccomp
 * presets: `vs-seccomp-gen OUT.c` builds each preset of the table in
 * src/seccomp_policy.c with libseccomp, exports the BPF, checks it against
 * the table, and writes OUT.c with the programs and their SHA-256.
 *
 * Why it is shaped this way:
 * - libseccomp's rule API runs here, once, at build time, and nowhere else:
 *   the sandboxed child only passes a constant array to seccomp(2), so
 *   launching cannot fail on allocation or on a libseccomp quirk, and the
 *   exact bytes that run are known (and hashed for attestations) at build
 *   time. build_preset below is the only "runtime" rule-building code.
 * - seccomp_export_bpf writes to an fd (libseccomp 2.5.4 has no
 *   seccomp_export_bpf_mem), so the program goes through a memfd and is read
 *   back.
 * - Before anything is written the BPF is run through vs_seccomp_selfcheck:
 *   every syscall number and the table's argument values must get the
 *   table's action, x32 and i386 calls must be killed. A libseccomp that
 *   orders or merges rules differently, or a table mistake, fails the build
 *   instead of shipping.
 * - The programs are for the build machine's architecture (SCMP_ARCH_NATIVE);
 *   the generated file records it and the library refuses to load programs
 *   of another architecture. When cross-compiling, this tool must run on a
 *   machine of the target architecture.
 * - OUT.c is written to OUT.c.tmp and renamed, so an interrupted run never
 *   leaves a half file that make would consider up to date.
 * As a program it may exit on errors (unlike library code).
 */
#include <errno.h>
#include <seccomp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seccomp_policy.h"

static void die(const char *what, int err)
{
    fprintf(stderr, "vs-seccomp-gen: %s%s%s\n", what, err ? ": " : "", err ? strerror(err) : "");
    exit(1);
}

/* The libseccomp action of rule r under preset p (as rule_action in
 * seccomp_policy.c, in libseccomp's terms). */
static uint32_t scmp_action(const struct vs_sc_rule *r, enum vs_seccomp_preset p)
{
    switch (r->kind) {
    case VS_SC_ALLOW: return (unsigned)p >= r->level ? SCMP_ACT_ALLOW : SCMP_ACT_NOTIFY;
    case VS_SC_BLOCK: return SCMP_ACT_NOTIFY;
    default: return SCMP_ACT_ERRNO(ENOSYS);
    }
}

static enum scmp_compare scmp_op(uint8_t op)
{
    switch (op) {
    case VS_OP_EQ: return SCMP_CMP_EQ;
    case VS_OP_GT: return SCMP_CMP_GT;
    case VS_OP_MASKED_EQ: return SCMP_CMP_MASKED_EQ;
    default: die("unknown comparison in the table", 0);
    }
    return SCMP_CMP_EQ;
}

/* Build preset p with libseccomp. */
static scmp_filter_ctx build_preset(enum vs_seccomp_preset p)
{
    const uint32_t def = SCMP_ACT_ERRNO(ENOSYS);
    scmp_filter_ctx ctx = seccomp_init(def);
    int rc;

    if (ctx == NULL)
        die("seccomp_init", ENOMEM);
    /* Only the native arch is in the filter: i386 and x32 calls take the
     * bad-arch action, which kills the whole process. */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0)
        die("SCMP_FLTATR_ACT_BADARCH", -rc);
    /* The launcher sets no_new_privs itself before loading. */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0)
        die("SCMP_FLTATR_CTL_NNP", -rc);
    /* A binary tree over the syscall numbers instead of libseccomp's default
     * linear chain. When a filter is loaded the kernel runs it once per
     * syscall number of the arch to find the calls that are always allowed
     * (seccomp_cache_prepare, the action cache): over a chain of ~530
     * instructions that alone took 265 us of the 323 us seccomp(2) cost at
     * every launch; with the tree the load takes 90 us (618 instructions,
     * the same action cache). Every syscall the cache does not cover also
     * walks a few tree levels instead of up to the whole chain. libseccomp
     * < 2.5 has no such attribute: then the chain it is. */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
        fprintf(stderr, "vs-seccomp-gen: note: no binary-tree layout in this libseccomp (%s); "
                        "the programs are linear chains (slower to load)\n", strerror(-rc));

    for (size_t i = 0; i < vs_seccomp_n_rules; i++) {
        const struct vs_sc_rule *r = &vs_seccomp_rules[i];
        uint32_t act = scmp_action(r, p);
        int nr = seccomp_syscall_resolve_name(r->name);
        char msg[160];

        if (nr == __NR_SCMP_ERROR) {
            if (r->flags & VS_SC_OPTIONAL) {
                fprintf(stderr, "vs-seccomp-gen: note: this libseccomp does not know %s; "
                                "it answers ENOSYS\n", r->name);
                continue;
            }
            snprintf(msg, sizeof(msg), "unknown syscall name in the table: %s", r->name);
            die(msg, 0);
        }
        if (act == def) /* libseccomp refuses rules equal to the default */
            continue;
        if (r->op == VS_OP_NONE) {
            rc = seccomp_rule_add(ctx, act, nr, 0);
        } else {
            struct scmp_arg_cmp cmp = {.arg = r->arg, .op = scmp_op(r->op),
                                       .datum_a = r->a, .datum_b = r->b};
            rc = seccomp_rule_add_exact_array(ctx, act, nr, 1, &cmp);
        }
        if (rc < 0) {
            snprintf(msg, sizeof(msg), "preset %s: rule %zu (%s)", vs_seccomp_preset_str(p), i,
                     r->name);
            die(msg, -rc);
        }
    }
    return ctx;
}

/* Export ctx's BPF through a memfd; returns the malloc'd program. */
static struct sock_filter *export_bpf(scmp_filter_ctx ctx, size_t *len)
{
    int fd = memfd_create("vs-seccomp-bpf", MFD_CLOEXEC);
    struct stat st;
    int rc;

    if (fd < 0)
        die("memfd_create", errno);
    if ((rc = seccomp_export_bpf(ctx, fd)) < 0)
        die("seccomp_export_bpf", -rc);
    if (fstat(fd, &st) < 0)
        die("fstat", errno);
    if (st.st_size <= 0 || st.st_size % (off_t)sizeof(struct sock_filter) != 0 ||
        st.st_size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS)
        die("seccomp_export_bpf wrote a program of an impossible size", 0);
    struct sock_filter *prog = malloc((size_t)st.st_size);
    if (prog == NULL)
        die("malloc", ENOMEM);
    if (pread(fd, prog, (size_t)st.st_size, 0) != st.st_size)
        die("reading the exported program back", errno);
    close(fd);
    *len = (size_t)st.st_size / sizeof(struct sock_filter);
    return prog;
}

int main(int argc, char **argv)
{
    char tmp[4096], err[512];
    FILE *out;

    if (argc != 2) {
        fprintf(stderr, "usage: vs-seccomp-gen OUT.c\n");
        return 2;
    }
    if (sodium_init() < 0)
        die("sodium_init", 0);
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]) >= (int)sizeof(tmp))
        die("output path too long", 0);
    if ((out = fopen(tmp, "w")) == NULL)
        die(tmp, errno);

    const struct scmp_version *v = seccomp_version();
    fprintf(out,
            "/*\n"
            " * seccomp_programs.c - GENERATED by vs-seccomp-gen (sandboxd/tools/seccomp_gen.c)\n"
            " * from the table in sandboxd/src/seccomp_policy.c with libseccomp %u.%u.%u for\n"
            " * audit arch 0x%08x. Do not edit; rebuild instead.\n"
            " *\n"
            " * The seccomp programs of the presets, checked against the table at\n"
            " * generation time, and the SHA-256 of each program's bytes.\n"
            " */\n"
            "#include \"seccomp_policy.h\"\n\n"
            "const uint32_t vs_seccomp_prebuilt_arch = 0x%08xu;\n\n",
            v->major, v->minor, v->micro, seccomp_arch_native(), seccomp_arch_native());

    uint8_t hashes[VS_PRESET_COUNT][32];
    size_t lens[VS_PRESET_COUNT];
    for (int p = 0; p < VS_PRESET_COUNT; p++) {
        const char *pname = vs_seccomp_preset_str((enum vs_seccomp_preset)p);
        scmp_filter_ctx ctx = build_preset((enum vs_seccomp_preset)p);
        size_t len;
        struct sock_filter *prog = export_bpf(ctx, &len);
        seccomp_release(ctx);

        struct sock_fprog fprog = {.len = (unsigned short)len, .filter = prog};
        if (vs_seccomp_selfcheck((enum vs_seccomp_preset)p, &fprog, err, sizeof(err)) < 0) {
            fprintf(stderr, "vs-seccomp-gen: self-check failed: %s\n", err);
            fclose(out);
            unlink(tmp);
            exit(1);
        }
        crypto_hash_sha256(hashes[p], (const unsigned char *)prog, len * sizeof(*prog));
        lens[p] = len;

        fprintf(out, "const struct sock_filter vs_seccomp_prog_%s[%zu] = {\n", pname, len);
        for (size_t i = 0; i < len; i++)
            fprintf(out, "    {0x%04x, %3u, %3u, 0x%08xu},\n", prog[i].code, prog[i].jt,
                    prog[i].jf, prog[i].k);
        fprintf(out, "};\nconst unsigned short vs_seccomp_prog_%s_len = %zu;\n\n", pname, len);
        free(prog);
    }

    fprintf(out, "const struct vs_seccomp_prebuilt vs_seccomp_prebuilt[VS_PRESET_COUNT] = {\n");
    for (int p = 0; p < VS_PRESET_COUNT; p++) {
        fprintf(out, "    {vs_seccomp_prog_%s, %zu, {",
                vs_seccomp_preset_str((enum vs_seccomp_preset)p), lens[p]);
        for (int i = 0; i < 32; i++)
            fprintf(out, "%s0x%02x", i ? ", " : "", hashes[p][i]);
        fprintf(out, "}},\n");
    }
    fprintf(out, "};\n");

    if (ferror(out) || fclose(out) != 0)
        die(tmp, EIO);
    if (rename(tmp, argv[1]) < 0)
        die(argv[1], errno);
    for (int p = 0; p < VS_PRESET_COUNT; p++)
        fprintf(stderr, "vs-seccomp-gen: %s: %zu instructions\n",
                vs_seccomp_preset_str((enum vs_seccomp_preset)p), lens[p]);
    return 0;
}
