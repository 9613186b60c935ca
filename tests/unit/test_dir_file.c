/*
 * test_dir_file - the embedded recipient list: normalization of entries,
 * catch-all domains, comments, errors with file:line, content tag.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../backends/dir_file.h"

static struct config cfg;
static char path[64];

static void write_file(const char *text)
{
    strcpy(path, "/tmp/test_dir_file.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    memset(&cfg, 0, sizeof(cfg));
    cfg.directory.file = path;
    cfg.directory.recipient_delimiter = "-+";
    cfg.directory.ignore_case = 1;
}

static void got(void *arg, enum dir_status st)
{
    *(int *)arg = (int)st;
}

/* ask_form - the file's answer for the form given (no stripping here) */
static int ask_form(struct directory *d, const struct address *a)
{
    int st = 99;
    directory_lookup(d, a, got, &st);
    assert_int_not_equal(st, 99);       /* answered before lookup returned */
    return st;
}

static int ask(struct directory *d, const char *rcpt)
{
    struct address a;
    assert_int_equal(addr_normalize(rcpt, "-+", 1, &a), ADDR_OK);
    return ask_form(d, &a);
}

/* ask_bare - the answer for rcpt without its extension (it has one) */
static int ask_bare(struct directory *d, const char *rcpt)
{
    struct address a, bare;
    assert_int_equal(addr_normalize(rcpt, "-+", 1, &a), ADDR_OK);
    assert_int_equal(addr_strip(&a, &bare), 1);
    return ask_form(d, &bare);
}

static void test_lookups(void **state)
{
    (void)state;
    char err[256] = "";
    write_file("# staff\n"
               "  alice@example.com  \n"
               "\n"
               "Bob.Smith+list@Example.COM\r\n"
               "first-last@example.com\n"
               "Owner-List@example.com\n"
               "@catchall.example\n");
    struct directory *d = dir_file_new(&cfg, err, sizeof(err));
    assert_non_null(d);
    assert_int_equal(ask(d, "alice@example.com"), DIR_FOUND);
    assert_int_equal(ask(d, "ALICE@EXAMPLE.com"), DIR_FOUND);
    /* each form is answered as itself: the chain (lookup.c) asks both */
    assert_int_equal(ask(d, "ALICE+x@EXAMPLE.com"), DIR_NOTFOUND);
    assert_int_equal(ask_bare(d, "ALICE+x@EXAMPLE.com"), DIR_FOUND);
    /* an entry keeps its extension, as a key of a Postfix table does */
    assert_int_equal(ask(d, "bob.smith+list@example.com"), DIR_FOUND);
    assert_int_equal(ask(d, "bob.smith@example.com"), DIR_NOTFOUND);
    assert_int_equal(ask(d, "first-last@example.com"), DIR_FOUND);
    assert_int_equal(ask_bare(d, "first-other@example.com"), DIR_NOTFOUND);
    assert_int_equal(ask(d, "owner-list@example.com"), DIR_FOUND);
    assert_int_equal(ask(d, "carol@example.com"), DIR_NOTFOUND);
    assert_int_equal(ask(d, "anyone@catchall.example"), DIR_FOUND);
    assert_int_equal(ask(d, "anyone@sub.catchall.example"), DIR_NOTFOUND);
    assert_int_equal(ask(d, "staff@example.com"), DIR_NOTFOUND);   /* comment */
    directory_free(d);
    unlink(path);
}

static void test_errors_name_file_and_line(void **state)
{
    (void)state;
    char err[256] = "", want[128];
    write_file("alice@example.com\n# fine\nnot an address\n");
    assert_null(dir_file_new(&cfg, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s:3: ", path);
    assert_memory_equal(err, want, strlen(want));
    unlink(path);

    cfg.directory.file = "/nonexistent/recipients";
    assert_null(dir_file_new(&cfg, err, sizeof(err)));
    assert_string_equal(err, "/nonexistent/recipients: cannot open: No such file or directory");
}

static uint64_t tag_of(const char *text)
{
    char err[256];
    write_file(text);
    struct directory *d = dir_file_new(&cfg, err, sizeof(err));
    assert_non_null(d);
    uint64_t tag = d->content_tag;
    directory_free(d);
    unlink(path);
    return tag;
}

static void test_content_tag(void **state)
{
    (void)state;
    uint64_t a = tag_of("a@example.com\nb@example.com\n");
    assert_int_equal(a, tag_of("# same set\nB@example.com\na@example.com\n"));
    assert_int_not_equal(a, tag_of("a@example.com\n"));
    assert_int_not_equal(a, tag_of("a@example.com\nb@example.com\nc@example.com\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_errors_name_file_and_line),
        cmocka_unit_test(test_content_tag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
