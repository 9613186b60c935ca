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
 *	When the empty line arrives, a second pass over the request (once,
 *	so still linear) NUL-terminates names and values in place and fills
 *	*req.  The request= attribute must be "smtpd_access_policy".
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

#include "proto.h"

/* The attributes we keep, and where they go.  Matched by length first: a
 * Postfix request has about 30 attributes and we keep 11, so most names
 * are passed over without a string compare. */
#define ATTR(name, field) { name, sizeof(name) - 1, offsetof(struct proto_request, field) }
static const struct {
    const char *name;
    size_t len;
    size_t off;
} proto_attrs[] = {
    ATTR("request", request),
    ATTR("protocol_state", protocol_state),
    ATTR("protocol_name", protocol_name),
    ATTR("client_address", client_address),
    ATTR("client_name", client_name),
    ATTR("helo_name", helo_name),
    ATTR("sender", sender),
    ATTR("recipient", recipient),
    ATTR("queue_id", queue_id),
    ATTR("sasl_username", sasl_username),
    ATTR("instance", instance),
};
#undef ATTR

#define PROTO_NATTRS (sizeof(proto_attrs) / sizeof(proto_attrs[0]))

/* proto_store - remember a value if we know the name */
static void proto_store(struct proto_request *req, const char *name,
                        size_t namelen, const char *value)
{
    size_t  i;

    for (i = 0; i < PROTO_NATTRS; i++) {
        if (proto_attrs[i].len == namelen
            && memcmp(name, proto_attrs[i].name, namelen) == 0) {
            const char **slot = (const char **) (void *)
                ((char *) req + proto_attrs[i].off);

            *slot = value;
            return;
        }
    }
}

/* proto_fill - second pass over a complete, validated request of len bytes
 * (its final empty line included): NUL-terminate in place, fill req. */
static void proto_fill(char *buf, size_t len, struct proto_request *req)
{
    size_t  pos = 0;

    while (pos < len) {
        char   *line = buf + pos;
        char   *nl = memchr(line, '\n', len - pos);
        char   *eq;
        size_t  n;

        if (nl == NULL)                         /* cannot happen: validated */
            break;
        n = (size_t) (nl - line);
        pos += n + 1;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n == 0)                             /* the terminating line */
            break;
        line[n] = '\0';
        eq = memchr(line, '=', n);
        if (eq == NULL)                         /* cannot happen: validated */
            continue;
        *eq = '\0';
        proto_store(req, line, (size_t) (eq - line), eq + 1);
    }
}

/*
 * first_error - the earliest problem among the bytes buf[from..end) of the
 * current line (no newline among them): a NUL, a byte past request_limit,
 * or a byte that makes the line longer than line_limit (one '\r' past the
 * limit is allowed, as it may be the CR of a CRLF).  The byte-at-a-time
 * rule is "the first offending byte decides, and at one byte NUL comes
 * before size before length"; this finds the same byte with memchr and
 * arithmetic instead of a loop.  Returns 0 or the PROTO_E* code, with the
 * offending offset in *at.
 */
static int first_error(const char *buf, size_t from, size_t end, size_t line_start,
                       const struct proto_limits *lim, size_t *at)
{
    const char *nul = memchr(buf + from, '\0', end - from);
    size_t best = end;
    int code = 0;

    if (nul) {
        best = (size_t) (nul - buf);
        code = PROTO_ENUL;
    }
    /* size: the first byte at offset >= request_limit */
    {
        size_t i = from > lim->request_limit ? from : lim->request_limit;

        if (i < best) {
            best = i;
            code = PROTO_ESIZE;
        }
    }
    /* length: the byte that makes linelen = line_limit + 1, or the next
     * one when that byte is the '\r' allowance */
    {
        size_t i = line_start + lim->line_limit;

        if (i < line_start)                     /* overflow: no limit */
            i = (size_t) -1;
        else if (i >= from && i < end && buf[i] == '\r')
            i++;
        else if (i < from)                      /* the '\r' allowance was used */
            i = from;
        if (i < best) {
            best = i;
            code = PROTO_ELINE;
        }
    }
    *at = best;
    return code;
}

int proto_parse(struct proto_scan *scan, char *buf, size_t len,
                const struct proto_limits *lim, struct proto_request *req,
                size_t *consumed)
{
    while (scan->off < len) {
        const char *nlp = memchr(buf + scan->off, '\n', len - scan->off);
        size_t end = nlp ? (size_t) (nlp - buf) : len;
        size_t at, linelen;
        int rc = first_error(buf, scan->off, end, scan->line_start, lim, &at);

        if (rc)
            return rc;
        if (!nlp) {
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
            const char *type;

            if (scan->nattrs == 0)
                return PROTO_ETYPE;
            memset(req, 0, sizeof(*req));
            proto_fill(buf, end + 1, req);
            req->nattrs = scan->nattrs;
            type = req->request;
            if (type == NULL || strcmp(type, "smtpd_access_policy") != 0)
                return PROTO_ETYPE;
            scan->off = end + 1;
            scan->line_start = end + 1;
            *consumed = end + 1;
            return PROTO_OK;
        }
        {
            const char *line = buf + scan->line_start;
            const char *eq = memchr(line, '=', linelen);

            if (eq == NULL || eq == line)
                return PROTO_ENOEQ;
        }
        scan->nattrs++;
        if (scan->nattrs > lim->attr_limit)
            return PROTO_EATTRS;
        scan->line_start = end + 1;
        scan->off = end + 1;
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
