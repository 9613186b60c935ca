#ifndef POLICYD_PROTO_H
#define POLICYD_PROTO_H

/*
 * proto - the Postfix policy delegation protocol
 *
 * A request is "name=value" lines ended by an empty line; the reply is
 * "action=..." and an empty line.  proto_parse() works in place on the
 * connection's read buffer: it scans only bytes it has not seen before, so a
 * peer trickling one byte at a time costs O(n), and it enforces the limits
 * while scanning, so an over-long line is refused before the request ends.
 * Values are NUL-terminated in place; the request's pointers point into the
 * buffer and stay valid until the caller discards the consumed bytes.
 * No I/O, no allocation.
 */

#include <stddef.h>

struct proto_limits {
    size_t line_limit;      /* bytes in one line, without the newline */
    size_t attr_limit;      /* attributes in one request */
    size_t request_limit;   /* bytes in one request, newlines included */
};

/* The attributes policyd keeps (struct proto_request's fields). */
enum proto_attr {
    PROTO_A_REQUEST, PROTO_A_PROTOCOL_STATE, PROTO_A_PROTOCOL_NAME,
    PROTO_A_CLIENT_ADDRESS, PROTO_A_CLIENT_NAME, PROTO_A_HELO_NAME,
    PROTO_A_SENDER, PROTO_A_RECIPIENT, PROTO_A_QUEUE_ID,
    PROTO_A_SASL_USERNAME, PROTO_A_INSTANCE,
    PROTO_NKEPT
};

/* Scan state carried across reads; zero it for each new request. */
struct proto_scan {
    size_t off;             /* bytes already scanned */
    size_t line_start;      /* offset where the current line began */
    size_t nattrs;          /* complete attribute lines so far */
    size_t eq;              /* 1 + offset of the line's first '=', or 0 */
    size_t val[PROTO_NKEPT];    /* offset of each kept value; 0: absent */
};

/* The attributes policyd uses; NULL when absent.  A repeated attribute
 * keeps its last value. */
struct proto_request {
    const char *request;
    const char *protocol_state;
    const char *protocol_name;
    const char *client_address;
    const char *client_name;
    const char *helo_name;
    const char *sender;
    const char *recipient;
    const char *queue_id;
    const char *sasl_username;
    const char *instance;
    size_t nattrs;
};

enum {
    PROTO_OK = 1,           /* a whole request was parsed */
    PROTO_MORE = 0,         /* need more bytes */
    PROTO_ELINE = -1,       /* line longer than line_limit */
    PROTO_EATTRS = -2,      /* more attributes than attr_limit */
    PROTO_ESIZE = -3,       /* request longer than request_limit */
    PROTO_ENOEQ = -4,       /* a line without '=' (or with an empty name) */
    PROTO_ENUL = -5,        /* a NUL byte */
    PROTO_ETYPE = -6,       /* request= missing or not smtpd_access_policy */
};

/*
 * proto_parse - look for one complete request in buf[0..len).
 * Returns PROTO_OK and sets *consumed (bytes to discard afterwards) and *req;
 * PROTO_MORE; or a negative PROTO_E* code, after which the connection must
 * be closed without a reply.
 */
int proto_parse(struct proto_scan *scan, char *buf, size_t len,
                const struct proto_limits *lim, struct proto_request *req,
                size_t *consumed);

const char *proto_strerror(int code);

/* proto_attr - the enum proto_attr of the name's len bytes, or -1 for a
 * name policyd does not keep. */
int proto_attr(const char *name, size_t len);

/* proto_format - "action=ACTION\n\n" and a NUL into out; returns the length
 * without the NUL, or 0 if it does not fit in cap or ACTION contains a
 * newline. */
size_t proto_format(char *out, size_t cap, const char *action);

#endif
