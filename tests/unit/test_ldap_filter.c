/*
 * test_ldap_filter - RFC 4515 escaping and template expansion
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../backends/ldap_filter.h"

/* mk - an address from local and domain, bytes taken as given; the
 * caller re-points .domain after copying (see fix()) */
static struct address mk(const char *local, size_t llen, const char *domain)
{
    struct address a;

    memset(&a, 0, sizeof(a));
    memcpy(a.full, local, llen);
    a.full[llen] = '@';
    strcpy(a.full + llen + 1, domain);
    a.local_len = llen;
    a.domain = a.full + llen + 1;
    return a;
}

static struct address *fix(struct address *a)
{
    a->domain = a->full + a->local_len + 1;
    return a;
}

static void expect(const char *tmpl, struct address a, const char *want)
{
    char out[LDAP_FILTER_MAX];
    int n;

    a.domain = a.full + a.local_len + 1;    /* a was copied by value */
    n = ldap_filter_expand(tmpl, &a, out, sizeof(out));

    assert_int_equal(n, (int) strlen(want));
    assert_string_equal(out, want);
}

static void test_plain(void **state)
{
    (void) state;
    expect("(mail=%s)", mk("alice", 5, "example.com"), "(mail=alice@example.com)");
    expect("(&(uid=%u)(dc=%d))", mk("alice", 5, "example.com"),
           "(&(uid=alice)(dc=example.com))");
    expect("(|(mail=%s)(mailLocalAddress=%s))", mk("bob", 3, "example.org"),
           "(|(mail=bob@example.org)(mailLocalAddress=bob@example.org))");
    expect("(proxyAddresses=smtp:%s)", mk("Bob", 3, "example.com"),
           "(proxyAddresses=smtp:Bob@example.com)");
    expect("(x=100%%%s)", mk("a", 1, "b"), "(x=100%a@b)");
}

static void test_metacharacters(void **state)
{
    (void) state;
    expect("(mail=%s)", mk("*", 1, "example.com"), "(mail=\\2a@example.com)");
    expect("(mail=%s)", mk("*)(mail=*", 9, "example.com"),
           "(mail=\\2a\\29\\28mail=\\2a@example.com)");
    expect("(uid=%u)", mk("a\\b(c)", 6, "x"), "(uid=a\\5cb\\28c\\29)");
    /* already-escaped looking input is escaped again, not trusted */
    expect("(uid=%u)", mk("\\2a", 3, "x"), "(uid=\\5c2a)");
    /* control and non-ASCII bytes (an address cannot hold a NUL) */
    expect("(uid=%u)", mk("\t\r\n\x7f", 4, "x"), "(uid=\\09\\0d\\0a\\7f)");
    expect("(uid=%u)", mk("j\xc3\xbcrgen", 7, "x"), "(uid=j\\c3\\bcrgen)");
    /* the domain is escaped too */
    expect("(dc=%d)", mk("a", 1, "ex*)(a"), "(dc=ex\\2a\\29\\28a)");
}

static void test_too_long(void **state)
{
    struct address a = mk("alice", 5, "example.com");
    char out[32];

    (void) state;
    fix(&a);
    /* exactly fits: "(mail=alice@example.com)" is 24 bytes + NUL */
    assert_int_equal(ldap_filter_expand("(mail=%s)", &a, out, 25), 24);
    assert_int_equal(ldap_filter_expand("(mail=%s)", &a, out, 24),
                     LDAP_FILTER_ETOOLONG);
    /* an escape is never cut in half */
    a = mk("**", 2, "x");
    fix(&a);
    assert_int_equal(ldap_filter_expand("%u", &a, out, 7), 6);
    assert_string_equal(out, "\\2a\\2a");
    assert_int_equal(ldap_filter_expand("%u", &a, out, 6), LDAP_FILTER_ETOOLONG);
    assert_int_equal(ldap_filter_expand("%u", &a, out, 0), LDAP_FILTER_ETOOLONG);
    /* the longest address, all metacharacters, fits LDAP_FILTER_MAX */
    {
        static char local[ADDR_MAX - 3];
        char big[LDAP_FILTER_MAX];

        memset(local, '*', sizeof(local));
        a = mk(local, sizeof(local), "x");
        fix(&a);
        assert_int_equal(ldap_filter_expand("(mail=%s)", &a, big, sizeof(big)),
                         (int) (7 + 3 * sizeof(local) + 2));
    }
}

static void test_bad_template(void **state)
{
    struct address a = mk("alice", 5, "example.com");
    char out[64];

    (void) state;
    fix(&a);
    assert_int_equal(ldap_filter_expand("(mail=%x)", &a, out, sizeof(out)),
                     LDAP_FILTER_EBADTMPL);
    assert_int_equal(ldap_filter_expand("(mail=%s)%", &a, out, sizeof(out)),
                     LDAP_FILTER_EBADTMPL);
    assert_int_equal(ldap_filter_check("(mail=%s)"), 0);
    assert_int_equal(ldap_filter_check("(|(mail=%s)(uid=%u))"), 0);
    assert_int_equal(ldap_filter_check("(cn=a\\29b%s)"), 0);
    assert_int_equal(ldap_filter_check("(mail=%s"), LDAP_FILTER_EPARENS);
    assert_int_equal(ldap_filter_check("mail=%s)"), LDAP_FILTER_EPARENS);
    assert_int_equal(ldap_filter_check("(mail=%q)"), LDAP_FILTER_EBADTMPL);
    assert_int_equal(ldap_filter_check("(mail=x)"), LDAP_FILTER_ENOSUBST);
    assert_int_equal(ldap_filter_check("(cn=a\\%s)"), LDAP_FILTER_EBADTMPL);
    assert_int_equal(ldap_filter_check("(cn=a\\2%s)"), LDAP_FILTER_EBADTMPL);
    assert_int_equal(ldap_filter_check("(cn=a\\2"), LDAP_FILTER_EBADTMPL);
    assert_int_equal(ldap_filter_check("(mail=%%)"), LDAP_FILTER_ENOSUBST);
    assert_string_equal(ldap_filter_strerror(LDAP_FILTER_EPARENS),
                        "unbalanced parentheses");
}

/* Through the real normalizer: what Postfix sends to what LDAP sees. */
static void test_normalized(void **state)
{
    struct address a;
    char out[LDAP_FILTER_MAX];

    (void) state;
    assert_int_equal(addr_normalize("<Alice@Example.COM>", "+", 0, &a), ADDR_OK);
    assert_int_equal(ldap_filter_expand("(mail=%s)", &a, out, sizeof(out)),
                     (int) strlen("(mail=Alice@example.com)"));
    assert_string_equal(out, "(mail=Alice@example.com)");
    assert_int_equal(addr_normalize("\"*)(mail=*\"@example.com", "+", 0, &a), ADDR_OK);
    ldap_filter_expand("(mail=%s)", &a, out, sizeof(out));
    assert_string_equal(out, "(mail=\\2a\\29\\28mail=\\2a@example.com)");
}

/* An address with an extension is asked twice: each form is expanded as
 * itself, %s whole, %u its own local part, %d the domain. */
static void test_both_forms(void **state)
{
    struct address a, bare;
    const char *tmpl = "(|(mail=%s)(&(uid=%u)(dc=%d)))";
    char out[LDAP_FILTER_MAX];
    int n;

    (void) state;
    assert_int_equal(addr_normalize("<Alice+tag@Example.COM>", "+", 0, &a), ADDR_OK);
    n = ldap_filter_expand(tmpl, &a, out, sizeof(out));
    assert_int_equal(n, (int) strlen(out));
    assert_string_equal(out, "(|(mail=Alice+tag@example.com)"
                        "(&(uid=Alice+tag)(dc=example.com)))");
    assert_int_equal(addr_strip(&a, &bare), 1);
    n = ldap_filter_expand(tmpl, &bare, out, sizeof(out));
    assert_int_equal(n, (int) strlen(out));
    assert_string_equal(out, "(|(mail=Alice@example.com)"
                        "(&(uid=Alice)(dc=example.com)))");
    /* owner-list is one mailbox with "-" as a delimiter */
    assert_int_equal(addr_normalize("owner-list@example.com", "-+", 1, &a), ADDR_OK);
    assert_int_equal(addr_strip(&a, &bare), 0);
    ldap_filter_expand(tmpl, &a, out, sizeof(out));
    assert_string_equal(out, "(|(mail=owner-list@example.com)"
                        "(&(uid=owner-list)(dc=example.com)))");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_metacharacters),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_bad_template),
        cmocka_unit_test(test_normalized),
        cmocka_unit_test(test_both_forms),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
