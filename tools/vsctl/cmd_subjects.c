/*
 * cmd_subjects.c - `vsctl subjects`: the subject table of subjects.def, as
 * an aligned plain table or (--markdown) the README's Markdown copy.
 *
 * Both forms are printed from the library's table at run time, never from
 * a copy, so the tool shows exactly what the binaries enforce. pub and sub
 * point here when a subject is not in the table.
 */
#include <stdio.h>
#include <string.h>

#include "vs/subjects.h"
#include "vsctl.h"

static const char *delivery_short(enum vs_delivery d)
{
    switch (d) {
    case VS_CORE: return "core";
    case VS_REQUEST: return "request";
    case VS_JETSTREAM: return "jetstream";
    case VS_JS_REPLY: return "js+reply";
    }
    return "?";
}

static void usage(FILE *out)
{
    fprintf(out, "usage: vsctl subjects [--markdown]\n"
                 "Print the bus subject table: subject pattern, delivery (core, request,\n"
                 "jetstream, js+reply), stream, message and reply types, purpose.\n\n"
                 "  --markdown     the Markdown table of the README\n\n" VSCTL_COMMON_HELP);
}

int cmd_subjects(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"markdown", no_argument, NULL, 'm'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    bool markdown = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'm': markdown = true; break;
        case 'h': usage(stdout); return VSCTL_OK;
        default: usage(stderr); return VSCTL_USAGE;
        }
    }
    if (optind != argc) {
        vsctl_err("subjects takes no arguments");
        return VSCTL_USAGE;
    }
    if (markdown) {
        vs_subjects_markdown(stdout);
        return fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
    }

    int w_subj = (int)strlen("SUBJECT"), w_msg = (int)strlen("MESSAGE"),
        w_reply = (int)strlen("REPLY"), w_stream = (int)strlen("STREAM");
    for (int i = 0; i < VS_SUBJ_COUNT; i++) {
        const struct vs_subject_def *d = vs_subject((enum vs_subject_id)i);
        int n = (int)strlen(d->pattern);
        w_subj = n > w_subj ? n : w_subj;
        n = d->message != NULL ? (int)strlen(d->message->name) : 3;
        w_msg = n > w_msg ? n : w_msg;
        n = d->reply != NULL ? (int)strlen(d->reply->name) : 1;
        w_reply = n > w_reply ? n : w_reply;
        n = (int)strlen(d->stream);
        w_stream = n > w_stream ? n : w_stream;
    }
    printf("%-*s  %-9s  %-*s  %-*s  %-*s  %s\n", w_subj, "SUBJECT", "DELIVERY", w_stream,
           "STREAM", w_msg, "MESSAGE", w_reply, "REPLY", "PURPOSE");
    for (int i = 0; i < VS_SUBJ_COUNT; i++) {
        const struct vs_subject_def *d = vs_subject((enum vs_subject_id)i);
        printf("%-*s  %-9s  %-*s  %-*s  %-*s  %s\n", w_subj, d->pattern,
               delivery_short(d->delivery), w_stream, d->stream[0] != '\0' ? d->stream : "-",
               w_msg, d->message != NULL ? d->message->name : "raw", w_reply,
               d->reply != NULL ? d->reply->name : "-", d->purpose);
    }
    return fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
}
