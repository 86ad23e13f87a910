/*
 * yaml_doc.c - reading the workers' YAML data files (vs/yaml_doc.h): a
 * file read whole up to its bound, parsed as one libyaml document, handed
 * to the format's reader; refusals as "file:line: reason".
 */
#include "vs/yaml_doc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vs_yaml_fail(struct vs_yaml_doc *d, const yaml_node_t *at, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (d->err != NULL && d->errlen > 0) {
        snprintf(d->err, d->errlen, "%s:%zu: %s", d->name,
                 at != NULL ? (size_t)at->start_mark.line + 1 : (size_t)0, msg);
    }
    return -EINVAL;
}

const char *vs_yaml_scalar(const yaml_node_t *n)
{
    return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

int vs_yaml_parse(const char *yaml, size_t len, const char *name, size_t max, vs_yaml_reader read,
                  void *arg, char *err, size_t errlen)
{
    struct vs_yaml_doc d = {NULL, name != NULL ? name : "yaml", err, errlen};
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc;

    if (yaml == NULL || read == NULL) {
        return -EINVAL;
    }
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (len > max) {
        return vs_yaml_fail(&d, NULL, "larger than %zu bytes", max);
    }
    if (!yaml_parser_initialize(&parser)) {
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_node_t at = {.start_mark = parser.problem_mark};
        rc = vs_yaml_fail(&d, &at, "YAML: %s", parser.problem != NULL ? parser.problem : "malformed");
        yaml_parser_delete(&parser);
        return rc;
    }
    d.doc = &doc;
    rc = read(&d, arg);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int vs_yaml_load(const char *path, size_t max, vs_yaml_reader read, void *arg, char *err,
                 size_t errlen)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    const char *base;
    FILE *f;
    int rc;

    if (path == NULL || read == NULL) {
        return -EINVAL;
    }
    if ((f = fopen(path, "rb")) == NULL) {
        rc = -errno;
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        }
        return rc;
    }
    /* up to max + 1 bytes: a file over the bound is refused by the parse */
    for (;;) {
        if (len == cap) {
            size_t ncap = cap == 0 ? 65536 : cap * 2;
            char *nb = realloc(buf, ncap < max + 1 ? ncap : max + 1);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = nb;
            cap = ncap < max + 1 ? ncap : max + 1;
        }
        size_t got = len < cap ? fread(buf + len, 1, cap - len, f) : 0;
        len += got;
        if (got == 0) {
            break;
        }
    }
    rc = ferror(f) ? -EIO : 0;
    fclose(f);
    base = strrchr(path, '/');
    if (rc != 0) {
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "%s: read error", path);
        }
    } else {
        rc = vs_yaml_parse(buf, len, base != NULL ? base + 1 : path, max, read, arg, err, errlen);
    }
    free(buf);
    return rc;
}
