/*
 * proto - the Postfix policy delegation protocol
 *
 * SYNOPSIS
 *	int proto_parse(scan, buf, len, lim, req, consumed)
 *	const char *proto_strerror(code)
 *	size_t proto_format(out, cap, action)
 *
 * DESCRIPTION
 *	proto_parse() looks for one request, "name=value" lines ended by an
 *	empty line, at the start of buf.  It is incremental: scan remembers
 *	how far it got, so each call only looks at bytes that arrived since
 *	the last one, and the work for a request is O(its size) however the
 *	peer splits it.  Every limit is checked as bytes are scanned, so a
 *	hostile peer cannot make us buffer more than the limits allow before
 *	we notice.
 *
 *	Line rules: "\n" ends a line; one "\r" right before it is dropped
 *	(some clients send CRLF).  Any other "\r" is part of the value.  A
 *	line needs a '=' and a non-empty name; the value runs from the first
 *	'=' to the end of the line and may be empty or contain '='.  Unknown
 *	names are ignored but count as attributes.  A repeated name keeps
 *	its last value.  A NUL byte anywhere in a request is an error: the
 *	values are handed on as C strings.
 *
 *	Each line is checked once, when its newline arrives; the value of
 *	a name we keep is NUL-terminated in place then and its offset kept
 *	in scan.  When the empty line arrives *req is filled from those
 *	offsets.  The request= attribute must be "smtpd_access_policy".
 *
 *	A limit of 0 is taken literally (nothing fits); config.c supplies
 *	the real values.
 *
 * LIMITS
 *	line_limit counts the bytes of a line without "\n" and without the
 *	one stripped "\r".  request_limit counts every byte of the request
 *	including all newlines and the final empty line.  attr_limit fails
 *	when the (limit+1)th attribute line is complete.
 */

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "proto.h"

/* The attributes we keep, and where they go, in enum proto_attr order. */
#define ATTR(name, field) { name, offsetof(struct proto_request, field) }
static const struct {
    const char *name;
    size_t off;
} proto_attrs[PROTO_NKEPT] = {
    [PROTO_A_REQUEST] = ATTR("request", request),
    [PROTO_A_PROTOCOL_STATE] = ATTR("protocol_state", protocol_state),
    [PROTO_A_PROTOCOL_NAME] = ATTR("protocol_name", protocol_name),
    [PROTO_A_CLIENT_ADDRESS] = ATTR("client_address", client_address),
    [PROTO_A_CLIENT_NAME] = ATTR("client_name", client_name),
    [PROTO_A_HELO_NAME] = ATTR("helo_name", helo_name),
    [PROTO_A_SENDER] = ATTR("sender", sender),
    [PROTO_A_RECIPIENT] = ATTR("recipient", recipient),
    [PROTO_A_QUEUE_ID] = ATTR("queue_id", queue_id),
    [PROTO_A_SASL_USERNAME] = ATTR("sasl_username", sasl_username),
    [PROTO_A_INSTANCE] = ATTR("instance", instance),
};
#undef ATTR

/*
 * proto_attr - which kept attribute a name is.  A request has about 30
 * names and we keep 11: the length and the first byte pick the one
 * candidate, so a name costs at most one compare.
 */
int proto_attr(const char *name, size_t len)
{
    int     k;

    switch (len) {
    case 6:
        k = PROTO_A_SENDER;
        break;
    case 7:
        k = PROTO_A_REQUEST;
        break;
    case 8:
        k = name[0] == 'q' ? PROTO_A_QUEUE_ID : PROTO_A_INSTANCE;
        break;
    case 9:
        k = name[0] == 'h' ? PROTO_A_HELO_NAME : PROTO_A_RECIPIENT;
        break;
    case 11:
        k = PROTO_A_CLIENT_NAME;
        break;
    case 13:
        k = name[0] == 'p' ? PROTO_A_PROTOCOL_NAME : PROTO_A_SASL_USERNAME;
        break;
    case 14:
        k = name[0] == 'p' ? PROTO_A_PROTOCOL_STATE : PROTO_A_CLIENT_ADDRESS;
        break;
    default:
        return -1;
    }
    /* the last byte first: most names of a kept one's length end apart */
    return name[len - 1] == proto_attrs[k].name[len - 1]
           && memcmp(name, proto_attrs[k].name, len) == 0 ? k : -1;
}

/*
 * line_stop - the first '\n' or NUL in buf[from..end), or end; on the way,
 * while *eq is 0, the first '=' (its offset + 1 into *eq).  Sixteen bytes
 * a step where SSE2 is (every x86-64): this is the only pass over a
 * request's bytes.
 */
static size_t line_stop(const char *buf, size_t from, size_t end, size_t *eq)
{
    size_t  i = from, p;

    for (;;) {
        unsigned hit = 0;

#ifdef __SSE2__
        const __m128i nls = _mm_set1_epi8('\n'), eqs = _mm_set1_epi8('=');
        const __m128i nuls = _mm_setzero_si128();

        for (; i + 16 <= end; i += 16) {
            __m128i w = _mm_loadu_si128((const __m128i *) (const void *) (buf + i));
            __m128i m = _mm_or_si128(_mm_cmpeq_epi8(w, nls), _mm_cmpeq_epi8(w, nuls));

            if (!*eq)
                m = _mm_or_si128(m, _mm_cmpeq_epi8(w, eqs));
            hit = (unsigned) _mm_movemask_epi8(m);
            if (hit)
                break;
        }
#endif
        if (hit) {
            p = i + (size_t) __builtin_ctz(hit);
        } else {
            for (p = i; p < end; p++)
                if (buf[p] == '\n' || buf[p] == '\0' || (buf[p] == '=' && !*eq))
                    break;
            if (p == end)
                return end;
        }
        if (buf[p] != '=')
            return p;
        *eq = p + 1;
        i = p + 1;
    }
}

/*
 * first_error - the earliest problem among the bytes buf[from..stop) of
 * the current line (no newline or NUL among them), where buf[stop], if
 * stop < end, is a newline or a NUL: a byte past request_limit, or a byte
 * that makes the line longer than line_limit (one '\r' past the limit is
 * allowed, as it may be the CR of a CRLF), or the NUL.  The byte-at-a-time
 * rule is "the first offending byte decides, and at one byte NUL comes
 * before size before length"; this finds the same byte with arithmetic.
 * Returns 0 or the PROTO_E* code.
 */
static int first_error(const char *buf, size_t from, size_t stop, size_t end,
                       size_t line_start, const struct proto_limits *lim)
{
    size_t  best = stop;
    int     code = stop < end && buf[stop] == '\0' ? PROTO_ENUL : 0;

    /* size: the first byte at offset >= request_limit */
    {
        size_t  i = from > lim->request_limit ? from : lim->request_limit;

        if (i < best) {
            best = i;
            code = PROTO_ESIZE;
        }
    }
    /* length: the byte that makes linelen = line_limit + 1, or the next
     * one when that byte is the '\r' allowance */
    {
        size_t  i = line_start + lim->line_limit;

        if (i < line_start)                     /* overflow: no limit */
            i = (size_t) -1;
        else if (i >= from && i < stop && buf[i] == '\r')
            i++;
        else if (i < from)                      /* the '\r' allowance was used */
            i = from;
        if (i < best)
            code = PROTO_ELINE;
    }
    return code;
}

/* request_done - the empty line at `end` closes the request: fill req */
static int request_done(const struct proto_scan *scan, char *buf, size_t end,
                        struct proto_request *req, size_t *consumed)
{
    size_t  k;

    if (scan->nattrs == 0)
        return PROTO_ETYPE;
    memset(req, 0, sizeof(*req));
    for (k = 0; k < PROTO_NKEPT; k++)
        if (scan->val[k])
            *(const char **) (void *) ((char *) req + proto_attrs[k].off) =
                buf + scan->val[k];
    req->nattrs = scan->nattrs;
    if (req->request == NULL || strcmp(req->request, "smtpd_access_policy") != 0)
        return PROTO_ETYPE;
    *consumed = end + 1;
    return PROTO_OK;
}

/*
 * proto_parse - one pass: each line is checked when its newline arrives,
 * and a kept value is NUL-terminated then, in place, its offset kept in
 * scan (offsets, not pointers: the caller may move a partial request).
 */
int proto_parse(struct proto_scan *scan, char *buf, size_t len,
                const struct proto_limits *lim, struct proto_request *req,
                size_t *consumed)
{
    while (scan->off < len) {
        size_t  end = line_stop(buf, scan->off, len, &scan->eq);
        size_t  linelen, eq = scan->eq;
        /* most lines end within both limits, with no NUL: no error to place */
        int     rc = end - scan->line_start <= lim->line_limit
                     && end <= lim->request_limit && (end == len || buf[end] == '\n')
                     ? 0 : first_error(buf, scan->off, end, len, scan->line_start, lim);
        int     k;

        if (rc)
            return rc;
        if (end == len) {
            scan->off = len;
            return PROTO_MORE;
        }
        /* the newline at `end` completes buf[line_start..end) */
        if (end + 1 > lim->request_limit)
            return PROTO_ESIZE;
        linelen = end - scan->line_start;
        if (linelen > 0 && buf[end - 1] == '\r')
            linelen--;
        if (linelen > lim->line_limit)          /* defensive: caught above */
            return PROTO_ELINE;
        if (linelen == 0) {                     /* end of the request */
            rc = request_done(scan, buf, end, req, consumed);
            if (rc == PROTO_OK)
                scan->off = scan->line_start = end + 1;
            return rc;
        }
        /* '=' is not '\r': one found is inside the line */
        if (eq-- == 0 || eq == scan->line_start)
            return PROTO_ENOEQ;
        scan->nattrs++;
        if (scan->nattrs > lim->attr_limit)
            return PROTO_EATTRS;
        k = proto_attr(buf + scan->line_start, eq - scan->line_start);
        if (k >= 0) {
            buf[scan->line_start + linelen] = '\0';
            scan->val[k] = eq + 1;
        }
        scan->line_start = end + 1;
        scan->off = end + 1;
        scan->eq = 0;
    }
    return PROTO_MORE;
}

const char *proto_strerror(int code)
{
    switch (code) {
    case PROTO_OK:
        return "ok";
    case PROTO_MORE:
        return "incomplete request";
    case PROTO_ELINE:
        return "line too long";
    case PROTO_EATTRS:
        return "too many attributes";
    case PROTO_ESIZE:
        return "request too large";
    case PROTO_ENOEQ:
        return "malformed attribute line";
    case PROTO_ENUL:
        return "NUL byte in request";
    case PROTO_ETYPE:
        return "not an smtpd_access_policy request";
    default:
        return "unknown protocol error";
    }
}

/*
 * proto_format - an action containing a newline cannot be sent without
 * breaking the protocol, so it is refused like one that does not fit.  The
 * output is NUL-terminated too, which needs one more byte of cap.
 */
size_t proto_format(char *out, size_t cap, const char *action)
{
    size_t  alen = strlen(action);
    size_t  need = sizeof("action=") - 1 + alen + 2;

    if (memchr(action, '\n', alen) != NULL || need + 1 > cap)
        return 0;
    memcpy(out, "action=", 7);
    memcpy(out + 7, action, alen);
    out[7 + alen] = '\n';
    out[8 + alen] = '\n';
    out[need] = '\0';
    return need;
}
