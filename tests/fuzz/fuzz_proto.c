// FUZZ_SOURCES: policyd/proto.c
// FUZZ_MAX_LEN: 8192
// FUZZ_OPTIONS: -use_value_profile=1
/*
 * fuzz_proto - libFuzzer target for proto_parse() and proto_format()
 *
 * Input: 6 header bytes, then the byte stream a peer sends.
 *	[0] line_limit  = 8 + b		(8..263)
 *	[1] attr_limit  = 1 + b % 64	(1..64)
 *	[2..3] request_limit = 16 + u16 % 8192
 *	[4..5] split point: the stream arrives in two reads cut there.
 * Every limit value is reachable, so an off-by-one at a boundary is.
 *
 * The stream is parsed request after request, as server.c does, three
 * ways: in one read, in two reads cut at the split point, and (for short
 * inputs) one byte per read.  All three must give the same sequence of
 * results, and the same as ref_parse(), a line-by-line restatement of the
 * documented rules used as an oracle.  Every accepted request must satisfy the documented contract
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

#define NONE ((size_t) -1)

/* What a stream parsed into; recipient= as offset and length in the
 * stream (NONE when absent), to compare values too. */
struct run {
    int     rc[MAX_RESULTS];
    size_t  consumed[MAX_RESULTS];
    size_t  rcpt_off[MAX_RESULTS];
    size_t  rcpt_len[MAX_RESULTS];
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
        r->rcpt_off[r->n] = NONE;
        r->rcpt_len[r->n] = NONE;
        if (rc == PROTO_OK && req.recipient != NULL) {
            r->rcpt_off[r->n] = (size_t) (req.recipient - buf);
            r->rcpt_len[r->n] = strlen(req.recipient);
        }
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

/*
 * ref_parse - the same contract written the other way round, as an oracle:
 * line by line, each possible error placed at the byte where it becomes
 * certain, the earliest one winning (at one byte: NUL, then size, then
 * line length).  Works on the unmodified stream.
 */
static int ref_parse(const char *b, size_t n, const struct proto_limits *lim,
                     size_t *consumed, size_t *roff, size_t *rlen)
{
    size_t  s = 0, nattrs = 0;

    for (;;) {
        const char *nl = memchr(b + s, '\n', n - s);
        size_t  e = nl ? (size_t) (nl - b) : n;
        size_t  raw = e - s, len, errpos = NONE, p;
        const char *z = memchr(b + s, '\0', e - s);
        int     err = 0;

        if (z != NULL) {
            errpos = (size_t) (z - b);
            err = PROTO_ENUL;
        }
        if (lim->request_limit <= (nl ? e : n - 1) && n > s
            && lim->request_limit < errpos) {
            errpos = lim->request_limit;
            err = PROTO_ESIZE;
        }
        if (raw > lim->line_limit) {
            p = s + lim->line_limit;
            if (b[p] == '\r')
                p++;
            if (p < e && p < errpos) {
                errpos = p;
                err = PROTO_ELINE;
            }
        }
        if (err)
            return err;
        if (nl == NULL)
            return PROTO_MORE;
        len = raw - (raw > 0 && b[e - 1] == '\r');
        if (len == 0) {
            size_t  q = 0, tlen = NONE, toff = 0;

            if (nattrs == 0)
                return PROTO_ETYPE;
            *consumed = e + 1;
            *roff = *rlen = NONE;
            /* The last request= and recipient= values. */
            while (q < e) {
                const char *l = b + q;
                size_t  ll = (size_t) ((const char *) memchr(l, '\n', e + 1 - q) - l);
                size_t  next = q + ll + 1;

                if (ll > 0 && l[ll - 1] == '\r')
                    ll--;
                if (ll >= 8 && memcmp(l, "request=", 8) == 0) {
                    toff = q + 8;
                    tlen = ll - 8;
                }
                if (ll >= 10 && memcmp(l, "recipient=", 10) == 0) {
                    *roff = q + 10;
                    *rlen = ll - 10;
                }
                q = next;
            }
            if (tlen != 19 || memcmp(b + toff, "smtpd_access_policy", 19) != 0)
                return PROTO_ETYPE;
            return PROTO_OK;
        }
        if (memchr(b + s, '=', len) == NULL || b[s] == '=')
            return PROTO_ENOEQ;
        if (++nattrs > lim->attr_limit)
            return PROTO_EATTRS;
        s = e + 1;
    }
}

static void ref_stream(const uint8_t *data, size_t size,
                       const struct proto_limits *lim, struct run *r)
{
    const char *b = (const char *) data;
    size_t  pos = 0;

    r->n = 0;
    while (r->n < MAX_RESULTS) {
        size_t  consumed = 0, roff = NONE, rlen = NONE;
        int     rc = ref_parse(b + pos, size - pos, lim, &consumed, &roff,
                               &rlen);

        if (rc == PROTO_MORE)
            break;
        r->rc[r->n] = rc;
        r->consumed[r->n] = rc == PROTO_OK ? consumed : 0;
        r->rcpt_off[r->n] = rc == PROTO_OK && roff != NONE ? pos + roff : NONE;
        r->rcpt_len[r->n] = rc == PROTO_OK ? rlen : NONE;
        r->n++;
        if (rc != PROTO_OK)
            break;
        pos += consumed;
    }
}

static void same(const struct run *a, const struct run *b)
{
    if (a->n != b->n)
        abort();
    if (memcmp(a->rc, b->rc, a->n * sizeof(a->rc[0])) != 0)
        abort();
    if (memcmp(a->consumed, b->consumed, a->n * sizeof(a->consumed[0])) != 0)
        abort();
    if (memcmp(a->rcpt_off, b->rcpt_off, a->n * sizeof(a->rcpt_off[0])) != 0)
        abort();
    if (memcmp(a->rcpt_len, b->rcpt_len, a->n * sizeof(a->rcpt_len[0])) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct run whole, split, trickle, ref;
    struct proto_limits lim;
    size_t  cut;

    if (size < 6)
        return 0;
    lim.line_limit = 8 + (size_t) data[0];
    lim.attr_limit = 1 + (size_t) data[1] % 64;
    lim.request_limit = 16 + ((size_t) data[2] << 8 | data[3]) % 8192;
    cut = ((size_t) data[4] << 8 | data[5]);
    data += 6;
    size -= 6;
    cut %= size + 1;

    parse_stream(data, size, &lim, size, 0, &whole);
    ref_stream(data, size, &lim, &ref);
    same(&whole, &ref);
    parse_stream(data, size, &lim, cut, 0, &split);
    same(&whole, &split);
    if (size <= 600) {
        parse_stream(data, size, &lim, 0, 1, &trickle);
        same(&whole, &trickle);
    }
    return 0;
}
