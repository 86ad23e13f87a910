/*
 * test_readme.c - the README's subject table is the subject table: it must
 * contain exactly what vs_subjects_markdown prints from subjects.def.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vs/subjects.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_readme_has_the_subject_table(void **state)
{
    (void)state;
    char *table = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&table, &len);
    vs_subjects_markdown(mem);
    fclose(mem);
    char *readme = slurp(VS_SOURCE_DIR "/README.md");
    if (strstr(readme, table) == NULL)
        fail_msg("README.md's subject table differs from subjects.def; paste `vsctl subjects --markdown`");
    free(readme);
    free(table);
}

static void test_every_stream_captures_its_subjects(void **state)
{
    (void)state;
    for (int s = 0; s < VS_STREAM_COUNT; s++) {
        const char *const *subjects = vs_stream_subjects((enum vs_stream_id)s);
        assert_non_null(subjects[0]); /* no stream without subjects */
    }
    /* Every JetStream subject names a declared stream. */
    for (int i = 0; i < VS_SUBJ_COUNT; i++) {
        const struct vs_subject_def *d = vs_subject((enum vs_subject_id)i);
        bool js = d->delivery == VS_JETSTREAM || d->delivery == VS_JS_REPLY;
        bool found = false;
        for (int s = 0; s < VS_STREAM_COUNT; s++)
            found |= strcmp(vs_stream((enum vs_stream_id)s)->name, d->stream) == 0;
        assert_true(js == found);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_has_the_subject_table),
        cmocka_unit_test(test_every_stream_captures_its_subjects),
    };
    return cmocka_run_group_tests_name("readme", tests, NULL, NULL);
}
