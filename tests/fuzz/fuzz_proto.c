// FUZZ_SOURCES: policyd/proto.c
// FUZZ_MAX_LEN: 8192
/*
 * fuzz_proto - libFuzzer target for proto_parse() and proto_format()
 *
 * Input: 5 header bytes, then the byte stream a peer sends.
 *	[0] line_limit  = 16 + 4 * b	(16..1036)
 *	[1] attr_limit  = 1 + b % 64	(1..64)
 *	[2] request_limit = 64 + 16 * b	(64..4144)
 *	[3..4] split point: the stream arrives in two reads cut there.
 *
 * The stream is parsed request after request, as server.c does, three
 * ways: in one read, in two reads cut at the split point, and (for short
 * inputs) one byte per read.  All three must give the same sequence of
 * results.  Every accepted request must satisfy the documented contract
 * (limits, the request= value, pointers inside the consumed bytes, values
 * NUL-terminated there); anything else abort()s.  Buffers hold exactly the
 * received bytes, so ASan sees any read past them.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../policyd/proto.h"

#define MAX_RESULTS 512

struct run {
    int     rc[MAX_RESULTS];
    size_t  consumed[MAX_RESULTS];
    size_t  n;
};

static void check_value(const char *v, const char *lo, const char *hi)
{
    if (v == NULL)
        return;
    if (v < lo || v >= hi)
        abort();
    if (memchr(v, '\0', (size_t) (hi - v)) == NULL)
        abort();
    if (strchr(v, '\n') != NULL)
        abort();
}

static void check_ok(const struct proto_request *req, const char *start,
                     size_t consumed, size_t avail,
                     const struct proto_limits *lim, size_t nattrs)
{
    const char *end = start + consumed;
    char    out[64];
    size_t  n;

    if (consumed < 2 || consumed > avail || consumed > lim->request_limit)
        abort();
    if (start[consumed - 1] != '\n')
        abort();
    if (req->nattrs < 1 || req->nattrs > lim->attr_limit
        || req->nattrs != nattrs)
        abort();
    if (req->request == NULL
        || strcmp(req->request, "smtpd_access_policy") != 0)
        abort();
    check_value(req->request, start, end);
    check_value(req->protocol_state, start, end);
    check_value(req->protocol_name, start, end);
    check_value(req->client_address, start, end);
    check_value(req->client_name, start, end);
    check_value(req->helo_name, start, end);
    check_value(req->sender, start, end);
    check_value(req->recipient, start, end);
    check_value(req->queue_id, start, end);
    check_value(req->sasl_username, start, end);
    check_value(req->instance, start, end);
    if (req->recipient != NULL && strlen(req->recipient) > lim->line_limit)
        abort();

    /* The formatter on a hostile value: exact length, or refused. */
    if (req->recipient != NULL) {
        size_t  alen = strlen(req->recipient);

        n = proto_format(out, sizeof(out), req->recipient);
        if (alen + 9 + 1 <= sizeof(out)) {
            if (n != alen + 9 || memcmp(out, "action=", 7) != 0
                || memcmp(out + 7, req->recipient, alen) != 0
                || out[n - 2] != '\n' || out[n - 1] != '\n' || out[n] != '\0')
                abort();
        } else if (n != 0) {
            abort();
        }
    }
}

/*
 * parse_stream - all requests in data[0..size), the bytes becoming visible
 * step bytes at a time (step 0: first cut bytes, then the rest).
 */
static void parse_stream(const uint8_t *data, size_t size,
                         const struct proto_limits *lim, size_t cut,
                         size_t step, struct run *r)
{
    char   *buf = malloc(size ? size : 1);
    size_t  pos = 0, avail;
    struct proto_scan scan;

    if (buf == NULL)
        abort();
    memcpy(buf, data, size);
    memset(&scan, 0, sizeof(scan));
    r->n = 0;
    avail = step ? (size < step ? size : step) : cut;
    while (r->n < MAX_RESULTS) {
        struct proto_request req;
        size_t  consumed = 0;
        int     rc;

        rc = proto_parse(&scan, buf + pos, avail - pos, lim, &req, &consumed);
        if (rc == PROTO_MORE) {
            if (scan.off != avail - pos || scan.line_start > scan.off)
                abort();
            if (avail == size)
                break;
            avail = step ? (avail + step > size ? size : avail + step) : size;
            continue;
        }
        r->rc[r->n] = rc;
        r->consumed[r->n] = rc == PROTO_OK ? consumed : 0;
        r->n++;
        if (proto_strerror(rc) == NULL)
            abort();
        if (rc != PROTO_OK) {
            if (rc < PROTO_ETYPE || rc > PROTO_ELINE)
                abort();
            break;
        }
        check_ok(&req, buf + pos, consumed, avail - pos, lim, scan.nattrs);
        pos += consumed;
        memset(&scan, 0, sizeof(scan));
    }
    free(buf);
}

static void same(const struct run *a, const struct run *b)
{
    if (a->n != b->n)
        abort();
    if (memcmp(a->rc, b->rc, a->n * sizeof(a->rc[0])) != 0)
        abort();
    if (memcmp(a->consumed, b->consumed, a->n * sizeof(a->consumed[0])) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct run whole, split, trickle;
    struct proto_limits lim;
    size_t  cut;

    if (size < 5)
        return 0;
    lim.line_limit = 16 + 4 * (size_t) data[0];
    lim.attr_limit = 1 + (size_t) data[1] % 64;
    lim.request_limit = 64 + 16 * (size_t) data[2];
    cut = ((size_t) data[3] << 8 | data[4]);
    data += 5;
    size -= 5;
    cut %= size + 1;

    parse_stream(data, size, &lim, size, 0, &whole);
    parse_stream(data, size, &lim, cut, 0, &split);
    same(&whole, &split);
    if (size <= 600) {
        parse_stream(data, size, &lim, 0, 1, &trickle);
        same(&whole, &trickle);
    }
    return 0;
}
