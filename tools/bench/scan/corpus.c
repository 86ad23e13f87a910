/*
 * corpus.c - the scanner benchmarks' corpus (corpus.h): files read in a
 * fixed order, so that every run of a benchmark on one machine measures
 * the same text.
 */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "corpus.h"

struct buf {
    uint8_t *p;
    size_t n, cap, want;
};

static int reserve(struct buf *b, size_t n)
{
    if (b->n + n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1u << 20;
    while (cap < b->n + n)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Append the file at path, up to b->want bytes in all. */
static int add_file(const char *path, struct buf *b)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -errno;
    int rc = 0;
    while (b->n < b->want && (rc = reserve(b, 65536)) == 0) {
        size_t room = b->want - b->n < 65536 ? b->want - b->n : 65536;
        size_t got = fread(b->p + b->n, 1, room, f);
        if (got == 0)
            break;
        b->n += got;
    }
    fclose(f);
    return rc;
}

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

/* The files of dir whose names end in suffix, depth first in sorted order
 * (symbolic links not followed). */
static int add_tree(const char *dir, const char *suffix, struct buf *b)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort), rc = 0;
    if (n < 0)
        return 0; /* unreadable: skipped */
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        if (rc == 0 && b->n < b->want && list[i]->d_name[0] != '.' &&
            snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name) < (int)sizeof path &&
            lstat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                rc = add_tree(path, suffix, b);
            else if (S_ISREG(st.st_mode) && has_suffix(list[i]->d_name, suffix) &&
                     add_file(path, b) == -ENOMEM)
                rc = -ENOMEM; /* unreadable files are skipped */
        }
        free(list[i]);
    }
    free(list);
    return rc;
}

/* The files of kind k, appended to b; -ENOENT when there are none. */
static int add_once(const struct corpus_kind *k, struct buf *b)
{
    size_t from = b->n;
    glob_t g;
    if (glob(k->roots, 0, NULL, &g) != 0)
        return -ENOENT;
    int rc = 0;
    for (size_t i = 0; i < g.gl_pathc && rc == 0; i++)
        rc = add_tree(g.gl_pathv[i], k->suffix, b);
    globfree(&g);
    return rc == 0 && b->n == from ? -ENOENT : rc;
}

/* Kind k appended to b up to b->want bytes, its files repeated if short. */
static int add_kind(const struct corpus_kind *k, struct buf *b)
{
    size_t from = b->n;
    int rc = add_once(k, b);
    for (size_t once = b->n - from; rc == 0 && b->n < b->want;) {
        size_t take = b->want - b->n < once ? b->want - b->n : once;
        if ((rc = reserve(b, take)) == 0) {
            memcpy(b->p + b->n, b->p + from, take);
            b->n += take;
        }
    }
    return rc;
}

int corpus_build(const struct corpus_kind *kinds, size_t n, size_t bytes, struct corpus *c,
                 const char **missing)
{
    unsigned shares = 0;
    for (size_t k = 0; k < n; k++)
        shares += kinds[k].share;
    if (n == 0 || n > CORPUS_MAX_KINDS)
        return -EINVAL;
    memset(c, 0, sizeof *c);
    struct buf b = {0};
    size_t once = 0; /* bytes of the kinds taken once */
    unsigned done = 0;
    for (size_t k = 0; k < n; k++) {
        size_t left = bytes > once ? bytes - once : 0;
        done += kinds[k].share;
        b.want = kinds[k].share == 0 ? SIZE_MAX
                                     : once + (size_t)((double)left * done / shares);
        c->start[k] = b.n;
        int rc = kinds[k].share == 0 ? add_once(&kinds[k], &b) : add_kind(&kinds[k], &b);
        if (rc != 0) {
            *missing = kinds[k].label;
            free(b.p);
            return rc;
        }
        c->size[k] = b.n - c->start[k];
        if (kinds[k].share == 0)
            once += c->size[k];
    }
    c->data = b.p;
    c->len = b.n;
    return 0;
}

int corpus_file(const char *path, struct corpus *c)
{
    struct buf b = {.want = SIZE_MAX};
    int rc = add_file(path, &b);
    if (rc != 0) {
        free(b.p);
        return rc;
    }
    *c = (struct corpus){.data = b.p, .len = b.n, .size = {b.n}};
    return 0;
}

void corpus_free(struct corpus *c)
{
    free(c->data);
    memset(c, 0, sizeof *c);
}
