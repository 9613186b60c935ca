/*
 * test_address - unit tests for policyd/address.c
 */

#include <setjmp.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "../../policyd/address.h"

/* norm - normalize and, on success, check the struct is consistent; bare
 * gets the form without the extension, "" when there is none. */
static int norm2(const char *in, const char *delim, int icase, char *res,
                 char *bare)
{
    struct address a, b;
    int     rc;

    memset(&a, 'Z', sizeof(a));
    rc = addr_normalize(in, delim, icase, &a);
    bare[0] = '\0';
    if (rc == ADDR_OK) {
        assert_true(strlen(a.full) < ADDR_MAX);
        assert_int_equal(a.full[a.local_len], '@');
        assert_ptr_equal(a.domain, a.full + a.local_len + 1);
        assert_true(a.local_len > 0);
        assert_true(strlen(a.domain) > 0);
        assert_null(strchr(a.domain, '@'));
        assert_true(a.bare_len > 0 && a.bare_len <= a.local_len);
        memset(&b, 'Z', sizeof(b));
        if (addr_strip(&a, &b)) {
            assert_true(a.bare_len < a.local_len);
            assert_int_equal(b.local_len, a.bare_len);
            assert_int_equal(b.bare_len, b.local_len);
            assert_ptr_equal(b.domain, b.full + b.local_len + 1);
            assert_string_equal(b.domain, a.domain);
            assert_memory_equal(b.full, a.full, a.bare_len);
            strcpy(bare, b.full);
        } else {
            assert_int_equal(a.bare_len, a.local_len);
            assert_memory_equal(&b, "ZZZZ", 4);     /* untouched */
        }
    } else {
        assert_string_equal(a.full, "");
    }
    strcpy(res, a.full);
    return rc;
}

static int norm(const char *in, const char *delim, int icase, char *res)
{
    char    bare[ADDR_MAX];

    return norm2(in, delim, icase, res, bare);
}

#define OK(in, delim, icase, want) do { \
        char r_[ADDR_MAX]; \
        assert_int_equal(norm((in), (delim), (icase), r_), ADDR_OK); \
        assert_string_equal(r_, (want)); \
    } while (0)

/* SPLIT: asked as want first, then as bare ("" = not split) */
#define SPLIT(in, delim, icase, want, bare) do { \
        char r_[ADDR_MAX], b_[ADDR_MAX]; \
        assert_int_equal(norm2((in), (delim), (icase), r_, b_), ADDR_OK); \
        assert_string_equal(r_, (want)); \
        assert_string_equal(b_, (bare)); \
    } while (0)

#define FAIL(in, delim, icase, code) do { \
        char r_[ADDR_MAX]; \
        assert_int_equal(norm((in), (delim), (icase), r_), (code)); \
    } while (0)

static void test_plain(void **state)
{
    struct address a;

    (void) state;
    assert_int_equal(addr_normalize("Bob@Example.COM", "", 0, &a), ADDR_OK);
    assert_string_equal(a.full, "Bob@example.com");
    assert_int_equal(a.local_len, 3);
    assert_string_equal(a.domain, "example.com");
    OK("Bob@Example.COM", "", 1, "bob@example.com");
    OK("Bob@Example.COM", NULL, 1, "bob@example.com");
    OK("a@b", "", 0, "a@b");
    OK("a.b-c_d@[192.0.2.1]", "", 0, "a.b-c_d@[192.0.2.1]");
}

static void test_angle_brackets(void **state)
{
    (void) state;
    OK("<bob@example.com>", "", 0, "bob@example.com");
    OK("<Bob@EXAMPLE.com>", "", 1, "bob@example.com");
    /* One pair only. */
    OK("<<bob@x>>", "", 0, "<bob@x>");
    FAIL("", "", 0, ADDR_EMPTY);
    FAIL("<>", "", 0, ADDR_EMPTY);
    FAIL(NULL, "", 0, ADDR_EMPTY);
    FAIL("<", "", 0, ADDR_UNQUALIFIED);
    FAIL(">", "", 0, ADDR_UNQUALIFIED);
    FAIL("<<>>", "", 0, ADDR_UNQUALIFIED);
}

static void test_unqualified(void **state)
{
    (void) state;
    FAIL("bob", "", 0, ADDR_UNQUALIFIED);
    FAIL("<bob>", "", 0, ADDR_UNQUALIFIED);
    FAIL("bob@", "", 0, ADDR_UNQUALIFIED);
    FAIL("@example.com", "", 0, ADDR_UNQUALIFIED);
    FAIL("@", "", 0, ADDR_UNQUALIFIED);
    FAIL("bob@.", "", 0, ADDR_UNQUALIFIED);
    FAIL("\"\"@example.com", "", 0, ADDR_UNQUALIFIED);
    FAIL("\"bob@example.com\"", "", 0, ADDR_UNQUALIFIED);
    /* The only '@' is inside the quotes. */
    FAIL("\"a@b\"x", "", 0, ADDR_UNQUALIFIED);
}

static void test_last_at(void **state)
{
    struct address a;

    (void) state;
    assert_int_equal(addr_normalize("a@b@Example.com", "", 0, &a), ADDR_OK);
    assert_string_equal(a.full, "a@b@example.com");
    assert_int_equal(a.local_len, 3);
    assert_string_equal(a.domain, "example.com");
    /* A quoted '@' is part of the local part. */
    assert_int_equal(addr_normalize("\"a@b\"@x", "", 0, &a), ADDR_OK);
    assert_string_equal(a.full, "a@b@x");
    assert_int_equal(a.local_len, 3);
    assert_string_equal(a.domain, "x");
}

static void test_quoting(void **state)
{
    (void) state;
    OK("\"john doe\"@example.com", "", 0, "john doe@example.com");
    OK("<\"john doe\"@example.com>", "", 0, "john doe@example.com");
    OK("\"John Doe\"@Example.com", "", 1, "john doe@example.com");
    OK("\"a\\\"b\"@x", "", 0, "a\"b@x");        /* "a\"b"@x */
    OK("\"a\\\\b\"@x", "", 0, "a\\b@x");        /* "a\\b"@x */
    OK("\"a\\b\"@x", "", 0, "ab@x");            /* "a\b"@x */
    OK("a\"b c\"d@x", "", 0, "ab cd@x");
    OK("\"bob\"@x", "", 0, "bob@x");
    /* Outside quotes a backslash is an ordinary character. */
    OK("a\\b@x", "", 0, "a\\b@x");
    FAIL("\"john@example.com", "", 0, ADDR_BAD);
    FAIL("john\"@example.com", "", 0, ADDR_BAD);
    FAIL("\"a\\\"@x", "", 0, ADDR_BAD);         /* "a\"@x: still open */
    FAIL("\"a\\", "", 0, ADDR_BAD);
    FAIL("a@\"x\"", "", 0, ADDR_BAD);
    FAIL("a@x\"", "", 0, ADDR_BAD);
}

static void test_control_chars(void **state)
{
    (void) state;
    FAIL("a\tb@x", "", 0, ADDR_BAD);
    FAIL("a@x\n", "", 0, ADDR_BAD);
    FAIL("a@x\r", "", 0, ADDR_BAD);
    FAIL("a\x7f@x", "", 0, ADDR_BAD);
    FAIL("a@x\x1f", "", 0, ADDR_BAD);
    FAIL("\"a\x01\"@x", "", 0, ADDR_BAD);
    FAIL("\"a\\\x01\"@x", "", 0, ADDR_BAD);
    FAIL("<a\x1b@x>", "", 0, ADDR_BAD);
    /* Control characters win over a missing domain. */
    FAIL("a\tb", "", 0, ADDR_BAD);
    /* 8-bit bytes pass through and are not case-folded. */
    OK("J\xc3\x96rg@Example.de", "", 1, "j\xc3\x96rg@example.de");
    OK("a b@x", "", 0, "a b@x");
}

static void test_domain(void **state)
{
    (void) state;
    OK("a@Example.COM.", "", 0, "a@example.com");
    OK("a@x..", "", 0, "a@x.");                 /* only one dot */
    OK("A@X", "", 0, "A@x");
}

static void test_extension(void **state)
{
    struct address a;

    (void) state;
    /* The full form is kept; the stripped one is asked second. */
    SPLIT("bob+tag@x", "+", 0, "bob+tag@x", "bob@x");
    SPLIT("bob+tag+more@x", "+", 0, "bob+tag+more@x", "bob@x");
    SPLIT("bob-tag+x@x", "+-", 0, "bob-tag+x@x", "bob@x");
    SPLIT("bob+tag-x@x", "-+", 0, "bob+tag-x@x", "bob@x");
    SPLIT("first-last@x", "-+", 0, "first-last@x", "first@x");
    SPLIT("a+b@x", "-+", 0, "a+b@x", "a@x");
    /* A delimiter at the end splits (empty extension); at the start not. */
    SPLIT("bob+@x", "+", 0, "bob+@x", "bob@x");
    SPLIT("+bob@x", "+", 0, "+bob@x", "");
    SPLIT("+bob+x@x", "+", 0, "+bob+x@x", "");
    SPLIT("+@x", "+", 0, "+@x", "");
    SPLIT("bob@x", "+", 0, "bob@x", "");
    SPLIT("bob+tag@x", "", 0, "bob+tag@x", "");
    SPLIT("bob+tag@x", NULL, 0, "bob+tag@x", "");
    SPLIT("bob+tag@x", "-", 0, "bob+tag@x", "");
    SPLIT("<Bob+Tag@X.>", "+", 1, "bob+tag@x", "bob@x");
    SPLIT("<Bob+Tag@X.>", "+", 0, "Bob+Tag@x", "Bob@x");
    /* On the unquoted form. */
    SPLIT("\"bob+x y\"@x", "+", 0, "bob+x y@x", "bob@x");
    /* With ignore_case the folded form is split: either case matches. */
    SPLIT("aXb@x", "X", 1, "axb@x", "a@x");
    SPLIT("axb@x", "X", 1, "axb@x", "a@x");
    SPLIT("axb@x", "X", 0, "axb@x", "");
    SPLIT("aXb@x", "X", 0, "aXb@x", "a@x");
    /* The domain is never cut. */
    SPLIT("bob@a+b.example", "+", 0, "bob@a+b.example", "");
    assert_int_equal(addr_normalize("bob+tag@example.com", "+", 0, &a), ADDR_OK);
    assert_int_equal(a.local_len, 7);
    assert_int_equal(a.bare_len, 3);
    assert_string_equal(a.domain, "example.com");
}

/* Postfix's split_addr() exceptions */
static void test_extension_reserved(void **state)
{
    (void) state;
    /* never split, whatever the delimiters */
    SPLIT("postmaster@x", "t", 0, "postmaster@x", "");
    SPLIT("PostMaster@x", "t", 1, "postmaster@x", "");
    SPLIT("mailer-daemon@x", "-", 0, "mailer-daemon@x", "");
    SPLIT("MAILER-DAEMON@x", "-+", 0, "MAILER-DAEMON@x", "");
    SPLIT("double-bounce@x", "-", 0, "double-bounce@x", "");
    SPLIT("Double-Bounce@x", "-", 1, "double-bounce@x", "");
    /* only the whole local part is reserved */
    SPLIT("postmaster+x@x", "+", 0, "postmaster+x@x", "postmaster@x");
    SPLIT("mailer-daemons@x", "-", 0, "mailer-daemons@x", "mailer@x");
    /* owner-* and *-request, when '-' is a delimiter */
    SPLIT("owner-list@x", "-+", 0, "owner-list@x", "");
    SPLIT("Owner-List@x", "-", 0, "Owner-List@x", "");
    SPLIT("owner-list+x@x", "-+", 0, "owner-list+x@x", "");
    SPLIT("owner-@x", "-", 0, "owner-@x", "");
    SPLIT("list-request@x", "-+", 0, "list-request@x", "");
    SPLIT("list-REQUEST@x", "-", 1, "list-request@x", "");
    SPLIT("a+b-request@x", "-+", 0, "a+b-request@x", "");
    /* "-request" alone has nothing before it: the ordinary rule, and the
     * delimiter is the first character */
    SPLIT("-request@x", "-", 0, "-request@x", "");
    SPLIT("x-request@x", "-", 0, "x-request@x", "");
    SPLIT("owner@x", "-", 0, "owner@x", "");
    SPLIT("owners-x@x", "-", 0, "owners-x@x", "owners@x");
    SPLIT("list-requests@x", "-", 0, "list-requests@x", "list@x");
    /* without '-' among the delimiters they split like any other */
    SPLIT("owner+list@x", "+", 0, "owner+list@x", "owner@x");
    SPLIT("owner-list+x@x", "+", 0, "owner-list+x@x", "owner-list@x");
    SPLIT("list+x-request@x", "+", 0, "list+x-request@x", "list@x");
}

static void test_too_long(void **state)
{
    char    in[2048], want[ADDR_MAX];

    (void) state;
    /* local 509 + "@x" = 511 = ADDR_MAX - 1: fits */
    memset(in, 'a', 509);
    strcpy(in + 509, "@x");
    OK(in, "", 0, in);
    /* one more */
    memset(in, 'a', 510);
    strcpy(in + 510, "@x");
    FAIL(in, "", 0, ADDR_TOOLONG);
    /* the trailing dot is not counted */
    memset(in, 'a', 509);
    strcpy(in + 509, "@x.");
    memcpy(want, in, 511);
    want[511] = '\0';
    OK(in, "", 0, want);
    /* the quotes and <> are not counted */
    in[0] = '<';
    in[1] = '"';
    memset(in + 2, 'a', 509);
    strcpy(in + 511, "\"@x>");
    OK(in, "", 0, want);
    /* the extension counts: the address is asked with it */
    memset(in, 'a', 1500);
    in[5] = '+';
    strcpy(in + 1500, "@x");
    FAIL(in, "+", 0, ADDR_TOOLONG);
    in[5] = 'a';
    FAIL(in, "", 0, ADDR_TOOLONG);
    memset(in, 'a', 509);
    in[5] = '+';
    strcpy(in + 509, "@x");
    SPLIT(in, "+", 0, in, "aaaaa@x");
    /* a long domain */
    in[0] = 'b';
    in[1] = '@';
    memset(in + 2, 'd', 509);
    in[511] = '\0';
    OK(in, "", 0, in);
    in[511] = 'd';
    in[512] = '\0';
    FAIL(in, "", 0, ADDR_TOOLONG);
    /* validation still looks at everything */
    memset(in, 'a', 1500);
    strcpy(in + 1500, "@x\t");
    FAIL(in, "", 0, ADDR_BAD);
}

static void test_strerror(void **state)
{
    (void) state;
    assert_string_equal(addr_strerror(ADDR_OK), "ok");
    assert_string_equal(addr_strerror(ADDR_EMPTY), "empty address");
    assert_string_equal(addr_strerror(ADDR_UNQUALIFIED),
                        "address without local part or domain");
    assert_string_equal(addr_strerror(ADDR_TOOLONG), "address too long");
    assert_string_equal(addr_strerror(ADDR_BAD), "malformed address");
    assert_string_equal(addr_strerror(42), "unknown address error");
}

static void test_parse_ip(void **state)
{
    uint8_t a[16];
    int     fam = 0;
    static const uint8_t v4[16] = {192, 0, 2, 1};
    static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};

    (void) state;
    memset(a, 0xee, sizeof(a));
    assert_int_equal(addr_parse_ip("192.0.2.1", &fam, a), 0);
    assert_int_equal(fam, AF_INET);
    assert_memory_equal(a, v4, 16);
    assert_int_equal(addr_parse_ip("2001:db8::1", &fam, a), 0);
    assert_int_equal(fam, AF_INET6);
    assert_memory_equal(a, v6, 16);
    assert_int_equal(addr_parse_ip("2001:DB8:0:0:0:0:0:1", &fam, a), 0);
    assert_memory_equal(a, v6, 16);
    /* IPv4-mapped is IPv4. */
    memset(a, 0xee, sizeof(a));
    assert_int_equal(addr_parse_ip("::ffff:192.0.2.1", &fam, a), 0);
    assert_int_equal(fam, AF_INET);
    assert_memory_equal(a, v4, 16);
    assert_int_equal(addr_parse_ip("::1", &fam, a), 0);
    assert_int_equal(fam, AF_INET6);

    fam = 12345;
    assert_int_equal(addr_parse_ip("[2001:db8::1]", &fam, a), -1);
    assert_int_equal(addr_parse_ip("ipv6:2001:db8::1", &fam, a), -1);
    assert_int_equal(addr_parse_ip("192.0.2", &fam, a), -1);
    assert_int_equal(addr_parse_ip("192.0.2.256", &fam, a), -1);
    assert_int_equal(addr_parse_ip("192.0.2.1 ", &fam, a), -1);
    assert_int_equal(addr_parse_ip(" 192.0.2.1", &fam, a), -1);
    assert_int_equal(addr_parse_ip("192.0.2.1/24", &fam, a), -1);
    assert_int_equal(addr_parse_ip("fe80::1%eth0", &fam, a), -1);
    assert_int_equal(addr_parse_ip("", &fam, a), -1);
    assert_int_equal(addr_parse_ip("unknown", &fam, a), -1);
    assert_int_equal(fam, 12345);
}

/* Dotted quads are taken exactly as inet_pton(AF_INET) takes them. */
static void test_parse_ipv4_as_inet_pton(void **state)
{
    static const char *const odd[] = {
        "0.0.0.0", "255.255.255.255", "1.2.3.4", "01.2.3.4", "1.2.3.04",
        "1.2.3.0", "1.2.3.00", "1.2.3", "1.2.3.4.", ".1.2.3.4", "1..2.3",
        "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "1.2.3.2555", "1.2.3.-1",
        "1.2.3.4 ", "1.2.3.4x", "+1.2.3.4", "1.2.3.4\n", "0x1.2.3.4", "1,2,3,4",
        "999.1.1.1", "1.2.3.4/32", "", ".", "....", "0", "00.0.0.0", "1.2.3.\xd9\xa3",
    };
    unsigned long seed = 777;
    char    s[40];              /* up to 32 bytes and the NUL */
    uint8_t want[4], a[16];
    int     fam, i;

    (void) state;
    for (i = 0; i < (int) (sizeof(odd) / sizeof(odd[0])) + 20000; i++) {
        const char *t = s;

        if (i < (int) (sizeof(odd) / sizeof(odd[0]))) {
            t = odd[i];
        } else {
            /* random bytes from a small alphabet: digits, dots, junk */
            static const char alpha[] = "0123456789....0012x ";
            size_t  n, k;

            seed = seed * 6364136223846793005UL + 1442695040888963407UL;
            n = (size_t) (seed >> 59) + 1;
            for (k = 0; k < n; k++) {
                seed = seed * 6364136223846793005UL + 1442695040888963407UL;
                s[k] = alpha[(seed >> 40) % (sizeof(alpha) - 1)];
            }
            s[n] = '\0';
        }
        if (inet_pton(AF_INET, t, want) == 1) {
            assert_int_equal(addr_parse_ip(t, &fam, a), 0);
            assert_int_equal(fam, AF_INET);
            assert_memory_equal(a, want, 4);
        } else if (addr_parse_ip(t, &fam, a) == 0) {
            /* only as IPv6, never as a dotted quad */
            assert_int_equal(fam, AF_INET6);
        }
    }
}

static void net(const char *ip, unsigned p4, unsigned p6, const char *want)
{
    uint8_t a[16];
    int     fam;
    char    out[64];

    assert_int_equal(addr_parse_ip(ip, &fam, a), 0);
    if (want == NULL) {
        assert_int_equal(addr_client_net(fam, a, p4, p6, out, sizeof(out)), -1);
    } else {
        assert_int_equal(addr_client_net(fam, a, p4, p6, out, sizeof(out)), 0);
        assert_string_equal(out, want);
    }
}

static void test_client_net(void **state)
{
    uint8_t a[16];
    int     fam;
    char    out[64];

    (void) state;
    net("192.0.2.77", 24, 64, "192.0.2.0/24");
    net("192.0.2.77", 32, 64, "192.0.2.77/32");
    net("192.0.2.77", 0, 64, "0.0.0.0/0");
    net("192.0.2.200", 25, 64, "192.0.2.128/25");
    net("10.1.255.1", 20, 64, "10.1.240.0/20");
    net("192.0.2.77", 33, 64, NULL);
    net("2001:db8:1:2:3:4:5:6", 24, 64, "2001:db8:1:2::/64");
    net("2001:db8:1:2:3:4:5:6", 24, 128, "2001:db8:1:2:3:4:5:6/128");
    net("2001:db8:1:2:3:4:5:6", 24, 0, "::/0");
    net("2001:db8:1:2:3:4:5:6", 24, 48, "2001:db8:1::/48");
    net("2001:db8::3", 24, 127, "2001:db8::2/127");
    net("2001:db8:1:2:3:4:5:6", 24, 129, NULL);
    net("::ffff:198.51.100.9", 24, 64, "198.51.100.0/24");

    /* Output size: exactly enough, one short. */
    assert_int_equal(addr_parse_ip("192.0.2.1", &fam, a), 0);
    assert_int_equal(addr_client_net(fam, a, 24, 64, out, 13), 0);
    assert_string_equal(out, "192.0.2.0/24");
    assert_int_equal(addr_client_net(fam, a, 24, 64, out, 12), -1);
    assert_int_equal(addr_client_net(AF_UNIX, a, 24, 64, out, sizeof(out)), -1);
}

/* Networks are written as inet_ntop writes them.  IPv6: compared on
 * addresses made of zero, 0xffff, small and random words (zero runs of
 * every length and place, ties, the IPv4 forms), at every prefix. */
static void test_client_net_v6_text(void **state)
{
    static const unsigned pick[] = {0, 0, 0, 0xffff, 1, 0x10, 0xab, 0xfff};
    unsigned long seed = 12345;
    uint8_t a[16], m[16];
    char    out[64], want[INET6_ADDRSTRLEN + 8];
    int     round, i;

    (void) state;
    for (round = 0; round < 20000; round++) {
        for (i = 0; i < 8; i++) {
            unsigned w;

            seed = seed * 6364136223846793005UL + 1442695040888963407UL;
            w = (unsigned) (seed >> 33);
            w = (w & 7) == 7 ? (w >> 3) & 0xffff : pick[(w >> 3) & 7];
            a[2 * i] = (uint8_t) (w >> 8);
            a[2 * i + 1] = (uint8_t) w;
        }
        for (unsigned prefix = 0; prefix <= 128; prefix += round % 2 ? 16 : 61) {
            memcpy(m, a, 16);
            for (i = 0; i < 16; i++) {
                unsigned keep = prefix > 8u * (unsigned) i ? prefix - 8u * (unsigned) i : 0;

                if (keep < 8)
                    m[i] &= (uint8_t) (0xff00u >> keep);
            }
            assert_non_null(inet_ntop(AF_INET6, m, want, INET6_ADDRSTRLEN));
            snprintf(want + strlen(want), 8, "/%u", prefix);
            assert_int_equal(addr_client_net(AF_INET6, a, 24, prefix, out, sizeof(out)), 0);
            assert_string_equal(out, want);
        }
    }
    /* IPv4: every byte value in every place, at /32 */
    for (i = 0; i < 256 * 4; i++) {
        memset(a, 0, sizeof(a));
        memset(a, 0x5a, 4);
        a[i / 256] = (uint8_t) i;
        assert_non_null(inet_ntop(AF_INET, a, want, INET_ADDRSTRLEN));
        strcat(want, "/32");
        assert_int_equal(addr_client_net(AF_INET, a, 32, 64, out, sizeof(out)), 0);
        assert_string_equal(out, want);
    }
}

static void test_cidr_parse(void **state)
{
    struct cidr c;
    static const uint8_t net24[16] = {192, 0, 2, 0};
    static const uint8_t host[16] = {192, 0, 2, 77};
    static const uint8_t v6net[16] = {0x20, 0x01, 0x0d, 0xb8};
    char    longs[200];

    (void) state;
    assert_int_equal(addr_cidr_parse("192.0.2.0/24", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 24);
    assert_memory_equal(c.addr, net24, 16);
    assert_int_equal(addr_cidr_parse("192.0.2.77/24", &c), 0);   /* masked */
    assert_memory_equal(c.addr, net24, 16);
    assert_int_equal(addr_cidr_parse("192.0.2.77", &c), 0);
    assert_int_equal(c.prefix, 32);
    assert_memory_equal(c.addr, host, 16);
    assert_int_equal(addr_cidr_parse("2001:db8::/32", &c), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 32);
    assert_memory_equal(c.addr, v6net, 16);
    assert_int_equal(addr_cidr_parse("2001:db8:ffff::1/32", &c), 0);
    assert_memory_equal(c.addr, v6net, 16);
    assert_int_equal(addr_cidr_parse("2001:db8::1", &c), 0);
    assert_int_equal(c.prefix, 128);
    assert_int_equal(addr_cidr_parse("0.0.0.0/0", &c), 0);
    assert_int_equal(c.prefix, 0);
    assert_int_equal(addr_cidr_parse("::/0", &c), 0);
    assert_int_equal(addr_cidr_parse("192.0.2.1/32", &c), 0);
    assert_int_equal(addr_cidr_parse("::1/128", &c), 0);
    assert_int_equal(addr_cidr_parse("10.0.0.0/08", &c), 0);
    assert_int_equal(c.prefix, 8);

    assert_int_equal(addr_cidr_parse("192.0.2.0/33", &c), -1);
    assert_int_equal(addr_cidr_parse("::/129", &c), -1);
    assert_int_equal(addr_cidr_parse("192.0.2.0/", &c), -1);
    assert_int_equal(addr_cidr_parse("/24", &c), -1);
    assert_int_equal(addr_cidr_parse("", &c), -1);
    assert_int_equal(addr_cidr_parse("junk", &c), -1);
    assert_int_equal(addr_cidr_parse("junk/8", &c), -1);
    assert_int_equal(addr_cidr_parse("192.0.2.0/-1", &c), -1);
    assert_int_equal(addr_cidr_parse("192.0.2.0/+8", &c), -1);
    assert_int_equal(addr_cidr_parse("192.0.2.0/ 8", &c), -1);
    assert_int_equal(addr_cidr_parse("192.0.2.0/8x", &c), -1);
    assert_int_equal(addr_cidr_parse("192.0.2.0/0008", &c), -1);
    assert_int_equal(addr_cidr_parse("192.0.2.0/24/8", &c), -1);
    assert_int_equal(addr_cidr_parse("192.0.2.0 /24", &c), -1);
    assert_int_equal(addr_cidr_parse("192.0.2/24", &c), -1);
    assert_int_equal(addr_cidr_parse("[::1]/128", &c), -1);
    memset(longs, '1', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    assert_int_equal(addr_cidr_parse(longs, &c), -1);
}

static int match(const char *cidr, const char *ip)
{
    struct cidr c;
    uint8_t a[16];
    int     fam;

    assert_int_equal(addr_cidr_parse(cidr, &c), 0);
    assert_int_equal(addr_parse_ip(ip, &fam, a), 0);
    return addr_cidr_match(&c, fam, a);
}

static void test_cidr_match(void **state)
{
    (void) state;
    /* /0 matches its whole family and nothing else */
    assert_int_equal(match("0.0.0.0/0", "203.0.113.9"), 1);
    assert_int_equal(match("0.0.0.0/0", "0.0.0.0"), 1);
    assert_int_equal(match("0.0.0.0/0", "2001:db8::1"), 0);
    assert_int_equal(match("::/0", "2001:db8::1"), 1);
    assert_int_equal(match("::/0", "192.0.2.1"), 0);
    /* /32, /128: one address */
    assert_int_equal(match("192.0.2.1/32", "192.0.2.1"), 1);
    assert_int_equal(match("192.0.2.1/32", "192.0.2.0"), 0);
    assert_int_equal(match("192.0.2.1/32", "192.0.2.3"), 0);
    assert_int_equal(match("192.0.2.1", "192.0.2.1"), 1);
    assert_int_equal(match("2001:db8::1/128", "2001:db8::1"), 1);
    assert_int_equal(match("2001:db8::1/128", "2001:db8::"), 0);
    assert_int_equal(match("2001:db8::1/128", "2001:db8::3"), 0);
    /* /127: a pair */
    assert_int_equal(match("2001:db8::2/127", "2001:db8::2"), 1);
    assert_int_equal(match("2001:db8::2/127", "2001:db8::3"), 1);
    assert_int_equal(match("2001:db8::2/127", "2001:db8::1"), 0);
    assert_int_equal(match("2001:db8::2/127", "2001:db8::4"), 0);
    /* byte boundary and not */
    assert_int_equal(match("192.0.2.0/24", "192.0.2.255"), 1);
    assert_int_equal(match("192.0.2.0/24", "192.0.3.0"), 0);
    assert_int_equal(match("192.0.2.0/24", "192.0.1.255"), 0);
    assert_int_equal(match("192.0.2.128/25", "192.0.2.128"), 1);
    assert_int_equal(match("192.0.2.128/25", "192.0.2.127"), 0);
    assert_int_equal(match("128.0.0.0/1", "200.1.2.3"), 1);
    assert_int_equal(match("128.0.0.0/1", "100.1.2.3"), 0);
    assert_int_equal(match("2001:db8::/32", "2001:db8:ffff::1"), 1);
    assert_int_equal(match("2001:db8::/32", "2001:db9::1"), 0);
    assert_int_equal(match("2001:db8::/33", "2001:db8:7fff::1"), 1);
    assert_int_equal(match("2001:db8::/33", "2001:db8:8000::1"), 0);
    /* a v4 network never matches a v6 address with the same bytes */
    assert_int_equal(match("32.1.13.184/32", "2001:db8::"), 0);
    /* v4-mapped clients are matched as IPv4 */
    assert_int_equal(match("192.0.2.0/24", "::ffff:192.0.2.7"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_angle_brackets),
        cmocka_unit_test(test_unqualified),
        cmocka_unit_test(test_last_at),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_control_chars),
        cmocka_unit_test(test_domain),
        cmocka_unit_test(test_extension),
        cmocka_unit_test(test_extension_reserved),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_parse_ip),
        cmocka_unit_test(test_parse_ipv4_as_inet_pton),
        cmocka_unit_test(test_client_net),
        cmocka_unit_test(test_client_net_v6_text),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_match),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
