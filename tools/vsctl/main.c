/*
 * main.c - vsctl, the operator's command line: global options, then one
 * subcommand (up, down, status, pub, sub, audit, ledger, keys, subjects).
 *
 * Dispatch is a table so that `vsctl --help` and the dispatcher cannot
 * disagree. Common options (--url, --state, -v) are accepted both before
 * the command and among its own options; each command parses the rest
 * with getopt_long and prints its own --help. Exit status everywhere:
 * 0 ok, 1 failure, 2 usage.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs/keys.h"
#include "vs/log.h"
#include "vsctl.h"

struct command {
    const char *name;
    int (*run)(struct vsctl *ctx, int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"up", cmd_up, "start a local stack (nats-server and daemons) under a supervisor"},
    {"down", cmd_down, "stop the local stack"},
    {"status", cmd_status, "health and counters of every daemon on the bus"},
    {"pub", cmd_pub, "publish one message, given as JSON, on a subject of the table"},
    {"sub", cmd_sub, "print the messages on a subject (wildcards allowed)"},
    {"audit", cmd_audit, "audit events and log: tail, emit, query, verify, export, prove, backup"},
    {"ledger", cmd_ledger, "the escrow ledger: balance, history, holds, check, deposit, backup"},
    {"keys", cmd_keys, "audit verifier keys; `keys init-audit` / `keys init-box` create keys"},
    {"seal", cmd_seal, "seal a payload to a pool's box key (SealedPayload JSON for `pub`)"},
    {"unseal", cmd_unseal, "open the sealed payload of a message (JSON on stdin) with a box key"},
    {"egress", cmd_egress, "one fetch or search through the egress worker, as a task's agent"},
    {"attest", cmd_attest, "verify a launcher's signed attestation of a task's run"},
    {"subjects", cmd_subjects, "the subject table (--markdown for the README)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: vsctl [common options] COMMAND [options] [args]\n"
                 "the operator's tool for a VibeShield stack\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n" VSCTL_COMMON_HELP
                 "  -V, --version  print the version\n"
                 "\n`vsctl COMMAND --help` describes a command. "
                 "Exit status: 0 ok, 1 failure, 2 usage.\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        VSCTL_COMMON_LONGOPTS,
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct vsctl ctx = {0};
    int opt;
    /* '+': stop at the command name; its options are its own. */
    while ((opt = getopt_long(argc, argv, "+vhV", longopts, NULL)) != -1) {
        if (vsctl_common_opt(&ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'h': usage(stdout); return VSCTL_OK;
        case 'V': printf("vsctl %s\n", VS_VERSION); return VSCTL_OK;
        default: usage(stderr); return VSCTL_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return VSCTL_USAGE;
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        usage(stdout);
        return VSCTL_OK;
    }
    /* The bus library logs warnings on stderr; a tool reports one line
     * itself unless asked for more. */
    log_init("vsctl", VS_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(name, commands[i].name) == 0) {
            if (ctx.verbose)
                log_init("vsctl", VS_LOG_INFO);
            if (vs_crypto_init() < 0) {
                vsctl_err("cannot initialize libsodium");
                return VSCTL_FAIL;
            }
            int first = optind;
            vsctl_getopt_reset();
            return commands[i].run(&ctx, argc - first, argv + first);
        }
    }
    vsctl_err("unknown command '%s' (see vsctl --help)", name);
    return VSCTL_USAGE;
}
