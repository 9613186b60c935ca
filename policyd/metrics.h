#ifndef POLICYD_METRICS_H
#define POLICYD_METRICS_H

/*
 * metrics - the Prometheus endpoint ([stats] prometheus = inet:HOST:PORT)
 *
 * A small HTTP/1.1 server on the loop: GET (or HEAD) /metrics answers
 * 200 with stats_render_prometheus() in the text exposition format 0.0.4;
 * any other path is 404, another method 405, a malformed or oversized
 * request 400 or 431.  Requests are parsed by libhttp-parser.  One request
 * per connection (the server closes after answering); requests, connections
 * and idle time are bounded.
 */

#include <stddef.h>
#include <uv.h>

#include "policy.h"

struct metrics;

/* endpoint: "inet:HOST:PORT" or "inet:[V6]:PORT" with a literal address.
 * Returns NULL with a message in err. */
struct metrics *metrics_new(uv_loop_t *loop, const char *endpoint,
                            struct policy *p, char *err, size_t errlen);
/* metrics_free - close the listener and connections; the loop must run
 * afterwards so close callbacks can free memory. */
void metrics_free(struct metrics *m);

#endif
