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

/* The attributes we keep, and where they go. */
static const struct {
    const char *name;
    size_t off;
} proto_attrs[] = {
    {"request", offsetof(struct proto_request, request)},
    {"protocol_state", offsetof(struct proto_request, protocol_state)},
    {"protocol_name", offsetof(struct proto_request, protocol_name)},
    {"client_address", offsetof(struct proto_request, client_address)},
    {"client_name", offsetof(struct proto_request, client_name)},
    {"helo_name", offsetof(struct proto_request, helo_name)},
    {"sender", offsetof(struct proto_request, sender)},
    {"recipient", offsetof(struct proto_request, recipient)},
    {"queue_id", offsetof(struct proto_request, queue_id)},
    {"sasl_username", offsetof(struct proto_request, sasl_username)},
    {"instance", offsetof(struct proto_request, instance)},
};

#define PROTO_NATTRS (sizeof(proto_attrs) / sizeof(proto_attrs[0]))

/* proto_store - remember a value if we know the name */
static void proto_store(struct proto_request *req, const char *name,
                        const char *value)
{
    size_t  i;

    for (i = 0; i < PROTO_NATTRS; i++) {
        if (strcmp(name, proto_attrs[i].name) == 0) {
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
        proto_store(req, line, eq + 1);
    }
}

int proto_parse(struct proto_scan *scan, char *buf, size_t len,
                const struct proto_limits *lim, struct proto_request *req,
                size_t *consumed)
{
    size_t  i;

    for (i = scan->off; i < len; i++) {
        unsigned char c = (unsigned char) buf[i];
        size_t  linelen;

        if (c == '\0')
            return PROTO_ENUL;
        if (i + 1 > lim->request_limit)
            return PROTO_ESIZE;
        if (c != '\n') {
            /* Refuse an over-long line before its newline arrives; allow
             * one '\r' past the limit since it may be the CR of a CRLF. */
            linelen = i + 1 - scan->line_start;
            if (linelen > lim->line_limit
                && !(c == '\r' && linelen == lim->line_limit + 1))
                return PROTO_ELINE;
            continue;
        }

        /* A line is complete: buf[line_start..i). */
        linelen = i - scan->line_start;
        if (linelen > 0 && buf[i - 1] == '\r')
            linelen--;
        if (linelen > lim->line_limit)          /* defensive: caught above */
            return PROTO_ELINE;

        if (linelen == 0) {                     /* end of the request */
            const char *type;

            if (scan->nattrs == 0)
                return PROTO_ETYPE;
            memset(req, 0, sizeof(*req));
            proto_fill(buf, i + 1, req);
            req->nattrs = scan->nattrs;
            type = req->request;
            if (type == NULL || strcmp(type, "smtpd_access_policy") != 0)
                return PROTO_ETYPE;
            scan->off = i + 1;
            scan->line_start = i + 1;
            *consumed = i + 1;
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
        scan->line_start = i + 1;
    }
    scan->off = len;
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
