/*
 * test_proto - unit tests for policyd/proto.c
 *
 * Every parse works on a malloc'd copy of exactly the bytes "received" and
 * no NUL after them, so a read past the end shows up under ASan/valgrind.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../policyd/proto.h"

/* A full Postfix 3.7 smtpd RCPT request: 31 attributes. */
static const char full_req[] =
    "request=smtpd_access_policy\n"
    "protocol_state=RCPT\n"
    "protocol_name=ESMTP\n"
    "client_address=192.0.2.10\n"
    "client_name=mail.example.net\n"
    "client_port=54321\n"
    "reverse_client_name=mail.example.net\n"
    "server_address=192.0.2.1\n"
    "server_port=25\n"
    "helo_name=mail.example.net\n"
    "sender=alice@example.net\n"
    "recipient=bob@example.com\n"
    "recipient_count=0\n"
    "queue_id=4Xyz1234\n"
    "instance=1a2b.64f0c1d2.5e6f7.0\n"
    "size=12345\n"
    "etrn_domain=\n"
    "stress=\n"
    "sasl_method=plain\n"
    "sasl_username=alice\n"
    "sasl_sender=\n"
    "ccert_subject=\n"
    "ccert_issuer=\n"
    "ccert_fingerprint=\n"
    "ccert_pubkey_fingerprint=\n"
    "encryption_protocol=TLSv1.3\n"
    "encryption_cipher=TLS_AES_256_GCM_SHA384\n"
    "encryption_keysize=256\n"
    "policy_context=\n"
    "compatibility_level=3.6\n"
    "mail_version=3.7.11\n"
    "\n";

static const struct proto_limits big = {4096, 100, 65536};

/* dup - exactly n bytes, not NUL-terminated */
static char *dup(const char *s, size_t n)
{
    char   *p = malloc(n ? n : 1);

    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

/* parse - one call on a fresh scan state over a copy of s */
static int parse(const char *s, size_t n, const struct proto_limits *lim,
                 struct proto_request *req, size_t *consumed, char **bufp)
{
    struct proto_scan scan = {0};
    char   *buf = dup(s, n);
    int     rc = proto_parse(&scan, buf, n, lim, req, consumed);

    if (bufp)
        *bufp = buf;
    else
        free(buf);
    return rc;
}

static int parse_str(const char *s, const struct proto_limits *lim)
{
    struct proto_request req;
    size_t  consumed = 0;

    return parse(s, strlen(s), lim, &req, &consumed, NULL);
}

static void check_full(const struct proto_request *req)
{
    assert_string_equal(req->request, "smtpd_access_policy");
    assert_string_equal(req->protocol_state, "RCPT");
    assert_string_equal(req->protocol_name, "ESMTP");
    assert_string_equal(req->client_address, "192.0.2.10");
    assert_string_equal(req->client_name, "mail.example.net");
    assert_string_equal(req->helo_name, "mail.example.net");
    assert_string_equal(req->sender, "alice@example.net");
    assert_string_equal(req->recipient, "bob@example.com");
    assert_string_equal(req->queue_id, "4Xyz1234");
    assert_string_equal(req->sasl_username, "alice");
    assert_string_equal(req->instance, "1a2b.64f0c1d2.5e6f7.0");
    assert_int_equal(req->nattrs, 31);
}

static void test_full_request(void **state)
{
    struct proto_request req;
    size_t  consumed = 0;
    char   *buf;

    (void) state;
    assert_int_equal(parse(full_req, strlen(full_req), &big, &req, &consumed,
                           &buf), PROTO_OK);
    assert_int_equal(consumed, strlen(full_req));
    check_full(&req);
    free(buf);
}

static void test_absent_attributes_are_null(void **state)
{
    const char *s = "request=smtpd_access_policy\nrecipient=\n\n";
    struct proto_request req;
    size_t  consumed = 0;
    char   *buf;

    (void) state;
    assert_int_equal(parse(s, strlen(s), &big, &req, &consumed, &buf), PROTO_OK);
    assert_null(req.sender);
    assert_null(req.client_address);
    assert_null(req.sasl_username);
    assert_null(req.protocol_state);
    assert_non_null(req.recipient);
    assert_string_equal(req.recipient, "");
    assert_int_equal(req.nattrs, 2);
    free(buf);
}

static void test_byte_by_byte(void **state)
{
    size_t  n = strlen(full_req), i, consumed = 0;
    char   *buf = malloc(n);
    struct proto_scan scan = {0};
    struct proto_request req;

    (void) state;
    assert_non_null(buf);
    for (i = 0; i < n; i++) {
        buf[i] = full_req[i];
        if (i + 1 < n) {
            assert_int_equal(proto_parse(&scan, buf, i + 1, &big, &req,
                                         &consumed), PROTO_MORE);
            assert_int_equal(scan.off, i + 1);
        }
    }
    assert_int_equal(proto_parse(&scan, buf, n, &big, &req, &consumed),
                     PROTO_OK);
    assert_int_equal(consumed, n);
    check_full(&req);
    free(buf);
}

/* Two reads split at every possible point give the same result. */
static void test_every_split(void **state)
{
    size_t  n = strlen(full_req), k, consumed;

    (void) state;
    for (k = 0; k <= n; k++) {
        struct proto_scan scan = {0};
        struct proto_request req;
        char   *buf = dup(full_req, n);
        int     rc = proto_parse(&scan, buf, k, &big, &req, &consumed);

        assert_int_equal(rc, k == n ? PROTO_OK : PROTO_MORE);
        if (k < n)
            assert_int_equal(proto_parse(&scan, buf, n, &big, &req,
                                         &consumed), PROTO_OK);
        assert_int_equal(consumed, n);
        check_full(&req);
        free(buf);
    }
}

/* The server moves a partial request (the loop's read buffer to the
 * connection's own) between reads: what the first call wrote in place
 * moves with it, and the request comes out whole at every split. */
static void test_moved_between_reads(void **state)
{
    size_t  n = strlen(full_req), k, consumed;

    (void) state;
    for (k = 0; k < n; k++) {
        struct proto_scan scan = {0};
        struct proto_request req;
        char   *first = dup(full_req, k), *moved = malloc(n);

        assert_non_null(moved);
        assert_int_equal(proto_parse(&scan, first, k, &big, &req, &consumed),
                         PROTO_MORE);
        memcpy(moved, first, k);
        memset(first, 'x', k);                  /* the old place is reused */
        memcpy(moved + k, full_req + k, n - k);
        assert_int_equal(proto_parse(&scan, moved, n, &big, &req, &consumed),
                         PROTO_OK);
        assert_int_equal(consumed, n);
        check_full(&req);
        free(first);
        free(moved);
    }
}

static void test_three_in_one_buffer(void **state)
{
    const char *s =
        "request=smtpd_access_policy\nrecipient=a@x\n\n"
        "request=smtpd_access_policy\r\nrecipient=b@x\r\n\r\n"
        "request=smtpd_access_policy\nrecipient=c@x\nsender=s@y\n\n"
        "request=smtpd_acc";                    /* a fourth, incomplete */
    size_t  n = strlen(s), pos = 0, consumed;
    char   *buf = dup(s, n);
    const char *want[3] = {"a@x", "b@x", "c@x"};
    size_t  wantlen[3] = {43, 46, 54};
    int     i;

    (void) state;
    for (i = 0; i < 3; i++) {
        struct proto_scan scan = {0};
        struct proto_request req;

        assert_int_equal(proto_parse(&scan, buf + pos, n - pos, &big, &req,
                                     &consumed), PROTO_OK);
        assert_int_equal(consumed, wantlen[i]);
        assert_string_equal(req.recipient, want[i]);
        assert_int_equal(req.nattrs, i == 2 ? 3 : 2);
        if (i == 2)
            assert_string_equal(req.sender, "s@y");
        else
            assert_null(req.sender);
        pos += consumed;
    }
    {
        struct proto_scan scan = {0};
        struct proto_request req;

        assert_int_equal(proto_parse(&scan, buf + pos, n - pos, &big, &req,
                                     &consumed), PROTO_MORE);
        assert_int_equal(n - pos, strlen("request=smtpd_acc"));
    }
    free(buf);
}

static void test_crlf(void **state)
{
    const char *s = "request=smtpd_access_policy\r\n"
        "recipient=bob@example.com\r\n"
        "sender=a\r\r\n"                        /* only one CR is stripped */
        "helo_name=x\ry\n"                      /* an inner CR is data */
        "\r\n";
    struct proto_request req;
    size_t  consumed = 0;
    char   *buf;

    (void) state;
    assert_int_equal(parse(s, strlen(s), &big, &req, &consumed, &buf), PROTO_OK);
    assert_int_equal(consumed, strlen(s));
    assert_string_equal(req.request, "smtpd_access_policy");
    assert_string_equal(req.recipient, "bob@example.com");
    assert_string_equal(req.sender, "a\r");
    assert_string_equal(req.helo_name, "x\ry");
    assert_int_equal(req.nattrs, 4);
    free(buf);
}

static void test_repeated_and_unknown(void **state)
{
    const char *s = "recipient=first@x\n"
        "request=smtpd_access_policy\n"
        "x-unknown=whatever\n"
        "recipient=second@x\n"
        "recipient=a=b@x\n"                     /* value keeps later '=' */
        "\n";
    struct proto_request req;
    size_t  consumed = 0;
    char   *buf;

    (void) state;
    assert_int_equal(parse(s, strlen(s), &big, &req, &consumed, &buf), PROTO_OK);
    assert_string_equal(req.recipient, "a=b@x");
    assert_int_equal(req.nattrs, 5);
    free(buf);
}

static void test_nul(void **state)
{
    static const char a[] = "request=smtpd_access_policy\nrecipient=a\0b\n\n";
    static const char b[] = "request=smtpd_access_policy\n\0recipient=a\n\n";
    static const char c[] = "req\0uest=smtpd_access_policy\n\n";
    static const char d[] = "\0";
    /* A NUL in the next request does not spoil the first. */
    static const char e[] = "request=smtpd_access_policy\n\n\0";
    struct proto_request req;
    size_t  consumed = 0;

    (void) state;
    assert_int_equal(parse(a, sizeof(a) - 1, &big, &req, &consumed, NULL),
                     PROTO_ENUL);
    assert_int_equal(parse(b, sizeof(b) - 1, &big, &req, &consumed, NULL),
                     PROTO_ENUL);
    assert_int_equal(parse(c, sizeof(c) - 1, &big, &req, &consumed, NULL),
                     PROTO_ENUL);
    assert_int_equal(parse(d, 1, &big, &req, &consumed, NULL), PROTO_ENUL);
    /* Before the newline arrives: the NUL alone is enough. */
    assert_int_equal(parse(a, 40, &big, &req, &consumed, NULL), PROTO_ENUL);
    assert_int_equal(parse(e, sizeof(e) - 1, &big, &req, &consumed, NULL),
                     PROTO_OK);
    assert_int_equal(consumed, sizeof(e) - 2);
}

static void test_noeq(void **state)
{
    (void) state;
    assert_int_equal(parse_str("request=smtpd_access_policy\nfoo\n\n", &big),
                     PROTO_ENOEQ);
    assert_int_equal(parse_str("request=smtpd_access_policy\n=bar\n\n", &big),
                     PROTO_ENOEQ);
    assert_int_equal(parse_str("garbage\n", &big), PROTO_ENOEQ);
    assert_int_equal(parse_str("=\n", &big), PROTO_ENOEQ);
    assert_int_equal(parse_str("=\r\n", &big), PROTO_ENOEQ);
    assert_int_equal(parse_str("GET / HTTP/1.0\r\n", &big), PROTO_ENOEQ);
    /* Not decided before the line is complete. */
    assert_int_equal(parse_str("garbage", &big), PROTO_MORE);
}

static void test_etype(void **state)
{
    (void) state;
    assert_int_equal(parse_str("\n", &big), PROTO_ETYPE);
    assert_int_equal(parse_str("\r\n", &big), PROTO_ETYPE);
    assert_int_equal(parse_str("recipient=a@b\n\n", &big), PROTO_ETYPE);
    assert_int_equal(parse_str("request=junk\nrecipient=a@b\n\n", &big),
                     PROTO_ETYPE);
    assert_int_equal(parse_str("request=smtpd_access_policyX\n\n", &big),
                     PROTO_ETYPE);
    assert_int_equal(parse_str("request=SMTPD_ACCESS_POLICY\n\n", &big),
                     PROTO_ETYPE);
    assert_int_equal(parse_str("request=\n\n", &big), PROTO_ETYPE);
    /* The last value counts. */
    assert_int_equal(parse_str("request=smtpd_access_policy\nrequest=x\n\n",
                               &big), PROTO_ETYPE);
    assert_int_equal(parse_str("request=x\nrequest=smtpd_access_policy\n\n",
                               &big), PROTO_OK);
}

/* line_limit: exactly at the limit passes, one more fails, even before
 * the newline arrives; the CR of a CRLF does not count. */
static void test_line_limit(void **state)
{
    struct proto_limits lim = {30, 100, 65536};
    /* "request=smtpd_access_policy" is 27 bytes */
    const char *at = "request=smtpd_access_policy\nsender=12345678901234567890123\n\n";
    const char *over = "request=smtpd_access_policy\nsender=123456789012345678901234\n\n";
    const char *at_crlf = "request=smtpd_access_policy\r\nsender=12345678901234567890123\r\n\r\n";
    const char *over_crlf = "request=smtpd_access_policy\r\nsender=123456789012345678901234\r\n\r\n";
    struct proto_request req;
    size_t  consumed;

    (void) state;
    assert_int_equal(strlen("sender=12345678901234567890123"), 30);
    assert_int_equal(parse_str(at, &lim), PROTO_OK);
    assert_int_equal(parse_str(over, &lim), PROTO_ELINE);
    assert_int_equal(parse_str(at_crlf, &lim), PROTO_OK);
    assert_int_equal(parse_str(over_crlf, &lim), PROTO_ELINE);
    /* Partial lines: 30 bytes, then 30 + CR wait; 31 fails at once. */
    assert_int_equal(parse(at, 28 + 30, &lim, &req, &consumed, NULL), PROTO_MORE);
    assert_int_equal(parse(at_crlf, 29 + 31, &lim, &req, &consumed, NULL),
                     PROTO_MORE);
    assert_int_equal(parse(over, 28 + 31, &lim, &req, &consumed, NULL),
                     PROTO_ELINE);
    /* 30 bytes + CR + another byte instead of LF */
    assert_int_equal(parse_str("request=smtpd_access_policy\n"
                               "sender=12345678901234567890123\rx\n\n", &lim),
                     PROTO_ELINE);
    /* The first line alone, one past the limit. */
    lim.line_limit = 26;
    assert_int_equal(parse_str("request=smtpd_access_p", &lim), PROTO_MORE);
    assert_int_equal(parse_str("request=smtpd_access_policy", &lim),
                     PROTO_ELINE);
    lim.line_limit = 27;
    assert_int_equal(parse_str("request=smtpd_access_policy\n\n", &lim),
                     PROTO_OK);
}

static void test_attr_limit(void **state)
{
    struct proto_limits lim = {4096, 3, 65536};
    const char *three = "request=smtpd_access_policy\na=1\nb=2\n\n";
    const char *four = "request=smtpd_access_policy\na=1\nb=2\nc=3\n\n";
    struct proto_request req;
    size_t  consumed;

    (void) state;
    assert_int_equal(parse_str(three, &lim), PROTO_OK);
    assert_int_equal(parse_str(four, &lim), PROTO_EATTRS);
    /* Fails when the 4th line completes, not waiting for the end. */
    assert_int_equal(parse(four, strlen(four) - 1, &lim, &req, &consumed,
                           NULL), PROTO_EATTRS);
    assert_int_equal(parse(four, strlen(four) - 2, &lim, &req, &consumed,
                           NULL), PROTO_MORE);
    /* Unknown and repeated attributes count. */
    assert_int_equal(parse_str("request=smtpd_access_policy\nrequest=smtpd_access_policy\n"
                               "x=1\ny=1\n\n", &lim), PROTO_EATTRS);
    lim.attr_limit = 1;
    assert_int_equal(parse_str("request=smtpd_access_policy\n\n", &lim),
                     PROTO_OK);
    assert_int_equal(parse_str("request=smtpd_access_policy\nx=\n\n", &lim),
                     PROTO_EATTRS);
}

static void test_request_limit(void **state)
{
    const char *s = "request=smtpd_access_policy\nrecipient=bob@example.com\n\n";
    size_t  n = strlen(s);
    struct proto_limits lim = {4096, 100, 0};
    struct proto_request req;
    size_t  consumed;
    char   *buf;

    (void) state;
    lim.request_limit = n;                      /* every byte counts */
    assert_int_equal(parse(s, n, &lim, &req, &consumed, &buf), PROTO_OK);
    assert_int_equal(consumed, n);
    assert_string_equal(req.recipient, "bob@example.com");
    free(buf);
    lim.request_limit = n - 1;
    assert_int_equal(parse(s, n, &lim, &req, &consumed, NULL), PROTO_ESIZE);
    /* Refused once the (limit+1)th byte arrives, not at the end. */
    lim.request_limit = 20;
    assert_int_equal(parse(s, 20, &lim, &req, &consumed, NULL), PROTO_MORE);
    assert_int_equal(parse(s, 21, &lim, &req, &consumed, NULL), PROTO_ESIZE);
    /* CRLF: the CRs count too. */
    {
        const char *c = "request=smtpd_access_policy\r\n\r\n";

        lim.request_limit = strlen(c);
        assert_int_equal(parse_str(c, &lim), PROTO_OK);
        lim.request_limit = strlen(c) - 1;
        assert_int_equal(parse_str(c, &lim), PROTO_ESIZE);
    }
    /* Bytes of a following request do not count against the first. */
    {
        const char *two = "request=smtpd_access_policy\n\n"
            "request=smtpd_access_policy\n\n";

        lim.request_limit = 29;
        assert_int_equal(parse(two, strlen(two), &lim, &req, &consumed, NULL),
                         PROTO_OK);
        assert_int_equal(consumed, 29);
    }
}

/* A long trickle stays linear: each call only scans new bytes. */
static void test_incremental_off(void **state)
{
    struct proto_scan scan = {0};
    struct proto_request req;
    size_t  consumed;
    char    buf[64];
    const char *s = "request=smtpd_access_policy\nrecipient=x\n\n";

    (void) state;
    memcpy(buf, s, strlen(s));
    assert_int_equal(proto_parse(&scan, buf, 10, &big, &req, &consumed),
                     PROTO_MORE);
    assert_int_equal(scan.off, 10);
    assert_int_equal(scan.line_start, 0);
    assert_int_equal(proto_parse(&scan, buf, 30, &big, &req, &consumed),
                     PROTO_MORE);
    assert_int_equal(scan.off, 30);
    assert_int_equal(scan.line_start, 28);
    assert_int_equal(scan.nattrs, 1);
    /* Nothing new: nothing changes. */
    assert_int_equal(proto_parse(&scan, buf, 30, &big, &req, &consumed),
                     PROTO_MORE);
    assert_int_equal(scan.off, 30);
    assert_int_equal(proto_parse(&scan, buf, strlen(s), &big, &req, &consumed),
                     PROTO_OK);
    assert_string_equal(req.recipient, "x");
}

static void test_format(void **state)
{
    char    out[64];

    (void) state;
    assert_int_equal(proto_format(out, sizeof(out), "DUNNO"), 14);
    assert_memory_equal(out, "action=DUNNO\n\n", 15);
    assert_int_equal(proto_format(out, sizeof(out),
                                  "550 5.1.1 User unknown"), 31);
    assert_string_equal(out, "action=550 5.1.1 User unknown\n\n");
    /* Room for the text and its NUL: exactly enough, one short. */
    assert_int_equal(proto_format(out, 15, "DUNNO"), 14);
    assert_string_equal(out, "action=DUNNO\n\n");
    assert_int_equal(proto_format(out, 14, "DUNNO"), 0);
    assert_int_equal(proto_format(out, 0, "DUNNO"), 0);
    assert_int_equal(proto_format(out, sizeof(out), ""), 9);
    assert_string_equal(out, "action=\n\n");
    assert_int_equal(proto_format(out, sizeof(out), "DUNNO\naction=OK"), 0);
}

static void test_strerror(void **state)
{
    (void) state;
    assert_string_equal(proto_strerror(PROTO_ELINE), "line too long");
    assert_string_equal(proto_strerror(PROTO_EATTRS), "too many attributes");
    assert_string_equal(proto_strerror(PROTO_ESIZE), "request too large");
    assert_string_equal(proto_strerror(PROTO_ENOEQ), "malformed attribute line");
    assert_string_equal(proto_strerror(PROTO_ENUL), "NUL byte in request");
    assert_string_equal(proto_strerror(PROTO_ETYPE),
                        "not an smtpd_access_policy request");
    assert_string_equal(proto_strerror(-99), "unknown protocol error");
}

/* proto_attr: every kept name, and names that are near them (Postfix's
 * other names of the same length, one byte off, a prefix, one byte longer,
 * over-long) are not kept. */
static void test_attr_names(void **state)
{
    static const char *const kept[PROTO_NKEPT] = {
        [PROTO_A_REQUEST] = "request",
        [PROTO_A_PROTOCOL_STATE] = "protocol_state",
        [PROTO_A_PROTOCOL_NAME] = "protocol_name",
        [PROTO_A_CLIENT_ADDRESS] = "client_address",
        [PROTO_A_CLIENT_NAME] = "client_name",
        [PROTO_A_HELO_NAME] = "helo_name",
        [PROTO_A_SENDER] = "sender",
        [PROTO_A_RECIPIENT] = "recipient",
        [PROTO_A_QUEUE_ID] = "queue_id",
        [PROTO_A_SASL_USERNAME] = "sasl_username",
        [PROTO_A_INSTANCE] = "instance",
    };
    static const char *const other[] = {
        "client_port", "reverse_client_name", "server_address",
        "server_port", "recipient_count", "size", "etrn_domain", "stress",
        "sasl_method", "sasl_sender", "ccert_subject", "ccert_issuer",
        "ccert_fingerprint", "ccert_pubkey_fingerprint",
        "encryption_protocol", "encryption_cipher", "encryption_keysize",
        "policy_context", "compatibility_level", "mail_version",
        "Request", "REQUEST", "requesT", "sendex", "xender", "queue_iD",
        "instanc_", "Instance", "helo_namE", "hecipient", "relo_name",
        "client_namx", "protocol_namf", "sasl_usernamx", "pasl_username",
        "protocol_statf", "client_addresz", "crotocol_state",
        "p", "s", "", "request_", "requestrequest", "protocol_states",
        "recipient=", "sender\r", "client_address_and_then_some_more_bytes",
    };
    char    buf[64];
    size_t  i;

    (void) state;
    for (i = 0; i < PROTO_NKEPT; i++) {
        size_t  n = strlen(kept[i]);

        /* not NUL-terminated: the name is len bytes of a line */
        memcpy(buf, kept[i], n);
        memset(buf + n, '=', sizeof(buf) - n);
        assert_int_equal(proto_attr(buf, n), (int) i);
        /* every proper prefix, and one byte more, is another name */
        for (size_t k = 0; k < n; k++)
            assert_int_equal(proto_attr(kept[i], k), -1);
        assert_int_equal(proto_attr(buf, n + 1), -1);
        /* one byte changed anywhere */
        for (size_t k = 0; k < n; k++) {
            memcpy(buf, kept[i], n);
            buf[k] ^= 0x20;
            assert_int_equal(proto_attr(buf, n), -1);
        }
    }
    for (i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        assert_int_equal(proto_attr(other[i], strlen(other[i])), -1);
    /* a long line's name: only its length is looked at first */
    {
        char    longname[5000];

        memset(longname, 'r', sizeof(longname));
        assert_int_equal(proto_attr(longname, sizeof(longname)), -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_request),
        cmocka_unit_test(test_absent_attributes_are_null),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_moved_between_reads),
        cmocka_unit_test(test_three_in_one_buffer),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_repeated_and_unknown),
        cmocka_unit_test(test_nul),
        cmocka_unit_test(test_noeq),
        cmocka_unit_test(test_etype),
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_attr_limit),
        cmocka_unit_test(test_request_limit),
        cmocka_unit_test(test_incremental_off),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_attr_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
