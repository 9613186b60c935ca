#ifndef POLICYD_SERVER_H
#define POLICYD_SERVER_H

/*
 * server - listeners and policy connections
 *
 * server_new() binds every [server] listen endpoint (inet:HOST:PORT,
 * inet:[V6]:PORT with numeric addresses, unix:/path) and starts accepting.
 * Each connection is a small state machine (reading, deciding, writing)
 * with at most one request being decided; bytes that arrive meanwhile wait
 * in its buffer, so replies keep their order.
 *
 * Memory per connection is bounded: an idle connection holds no buffer (a
 * read lands in one loop-wide buffer and only a partial request is copied
 * out), a partial request holds at most request_limit bytes.  A reply the
 * socket does not take at once (the peer is not reading) is the only one
 * kept, and reading from that peer stops until it is out: a peer that
 * pipelines and never reads costs at most request_limit + 1100 bytes.
 * Over max_connections a new connection is accepted and closed at once.
 * A periodic sweep closes connections idle longer than idle_timeout, and
 * those whose pending reply has not left for idle_timeout.
 *
 * The limits (max_connections, idle_timeout, protocol limits) are read from
 * the policy's current config, so a reload changes them for new requests.
 */

#include <stddef.h>
#include <uv.h>

#include "policy.h"

struct server;

struct server *server_new(uv_loop_t *loop, struct policy *p, char *err, size_t errlen);

/* server_shutdown - stop accepting, close idle connections, let busy ones
 * get their answer, then close them.  done() runs once no connection is
 * left. */
void server_shutdown(struct server *s, void (*done)(void *arg), void *arg);
/* server_abort - close every connection now (the shutdown bound expired). */
void server_abort(struct server *s);
void server_free(struct server *s);

/* server_endpoint - "inet:HOST:PORT" (numeric HOST; IPv6 in brackets) into
 * sa, or "unix:/path" into path (sa->ss_family = AF_UNIX).  Also used by the
 * metrics listener.  Returns 0, or -1 with err. */
int server_endpoint(const char *spec, struct sockaddr_storage *sa, char *path,
                    size_t pathlen, char *err, size_t errlen);

#endif
