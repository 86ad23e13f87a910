/*
 * vs/yaml_doc.h - how the workers' YAML data files (the scanners' rules,
 * the egress policies) are read: the file whole, up to a size bound, as one
 * libyaml document, handed to the caller's reader, with every refusal
 * written as "file:line: reason".
 *
 * Why the document API and one shared reader: rule and policy files are
 * small, a tree gives every error its line without a hand-written state
 * machine, and each file format then only says what its keys mean.
 * Functions return 0 or -errno and never print.
 */
#ifndef VS_YAML_DOC_H
#define VS_YAML_DOC_H

#include <stddef.h>
#include <yaml.h>

/* A document being read. */
struct vs_yaml_doc {
    yaml_document_t *doc;
    const char *name; /* the file name in messages */
    char *err;        /* where a refusal is written (NULL: nowhere) */
    size_t errlen;
};

/* Writes "name:line: reason" (the line of at; 0 when at is NULL) to the
 * document's err and returns -EINVAL, so that a reader can
 * `return vs_yaml_fail(...)`. */
int vs_yaml_fail(struct vs_yaml_doc *d, const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The text of a scalar node; NULL for any other node or NULL. */
const char *vs_yaml_scalar(const yaml_node_t *n);

/* What reads a document into the caller's structure (arg): 0 or -errno
 * (a refusal through vs_yaml_fail). */
typedef int (*vs_yaml_reader)(struct vs_yaml_doc *d, void *arg);

/* Parses yaml[0..len) as one document and hands it to read. Returns
 * read's value, -EINVAL (more than max bytes, a YAML error: both with a
 * message in err) or -ENOMEM. */
int vs_yaml_parse(const char *yaml, size_t len, const char *name, size_t max, vs_yaml_reader read,
                  void *arg, char *err, size_t errlen);

/* The same for the file at path (its base name in messages). Also -errno
 * when it cannot be opened or read, with "path: reason" in err. */
int vs_yaml_load(const char *path, size_t max, vs_yaml_reader read, void *arg, char *err,
                 size_t errlen);

#endif
