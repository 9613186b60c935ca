#ifndef POLICYD_STATS_H
#define POLICYD_STATS_H

/*
 * stats - process-wide counters and fixed-bucket latency histograms
 *
 * One global struct, written only from the loop thread (no locks).  Modules
 * bump the counters that describe their own work; stats_render_* turn a
 * snapshot into a text table, JSON or the Prometheus text format.
 * Histogram buckets are fixed at compile time, so recording is a few
 * compares and an increment, with no allocation.
 */

#include <stdint.h>
#include "util.h"

#define STATS_BUCKETS 17

struct stats_hist {
    uint64_t count;
    uint64_t sum_us;
    uint64_t bucket[STATS_BUCKETS];     /* bucket[i]: value <= stats_bounds_us[i]; last is +Inf */
};

extern const uint64_t stats_bounds_us[STATS_BUCKETS];

enum stats_verdict {
    VERDICT_ACCEPTED,       /* recipient exists (or not ours): DUNNO */
    VERDICT_UNKNOWN,        /* rejected as unknown */
    VERDICT_TEMPFAIL,       /* directory unavailable */
    VERDICT_BLOCKED,        /* client network blocked */
    VERDICT_DEFERRED,       /* domain under siege, client not established */
    VERDICT_MAX
};

/* Protocol states counted separately; anything else counts as OTHER. */
enum stats_state {
    STATE_CONNECT, STATE_EHLO, STATE_HELO, STATE_MAIL, STATE_RCPT,
    STATE_DATA, STATE_END_OF_MESSAGE, STATE_VRFY, STATE_ETRN, STATE_OTHER,
    STATE_MAX
};

struct stats {
    uint64_t start_ms;              /* util_now_ms() at start */
    uint64_t start_wall;            /* time(NULL) at start */

    uint64_t conn_current;
    uint64_t conn_total;
    uint64_t conn_refused;          /* over max_connections */
    uint64_t conn_protocol_errors;  /* closed for a malformed request */
    uint64_t conn_idle_closed;

    uint64_t requests_total;
    uint64_t requests_by_state[STATE_MAX];
    uint64_t verdicts[VERDICT_MAX];
    uint64_t delayed_total;         /* answers that were tarpitted */
    uint64_t delayed_now;           /* waiting in a tarpit delay now */
    uint64_t blocked_networks_total;/* blocks earned (by this process) */
    uint64_t trap_hits_total;       /* RCPTs to a trap address */
    uint64_t would_delay_networks_total; /* [harvest] dry_run: tarpits not applied */
    uint64_t would_block_networks_total; /* [harvest] dry_run: blocks not applied */
    uint64_t dry_run_answers_total; /* [actions] dry_run: answers turned to DUNNO/WARN */
    struct stats_hist latency;      /* request in -> reply out */

    uint64_t l1_hits, l1_misses;
    uint64_t redis_hits, redis_misses;
    uint64_t redis_errors, redis_reconnects;
    int redis_up;
    int redis_stores;               /* Redis stores alive: > 0 when [redis] is configured */

    uint64_t dir_queries;           /* sent to the backend */
    uint64_t dir_coalesced;         /* joined a query already in flight */
    uint64_t dir_errors;
    uint64_t dir_timeouts;
    struct stats_hist dir_latency;

    uint64_t reloads, reload_failures;
};

extern struct stats stats;

void stats_init(void);
void stats_hist_add(struct stats_hist *h, uint64_t us);
/* stats_hist_quantile - upper bound (us) of the bucket holding quantile q. */
uint64_t stats_hist_quantile(const struct stats_hist *h, double q);
enum stats_state stats_state_of(const char *protocol_state);
/* stats_verdict_name - "accepted", "unknown", ...: the one list of names,
 * for logs and every renderer */
const char *stats_verdict_name(enum stats_verdict v);

/* Extra lines the renderers append: the harvest module's view of
 * offending and blocked networks, filled by the caller. */
struct stats_net {
    const char *net;
    long long count;
    long long block_ms;     /* remaining block time, 0 if not blocked */
};
/* One protected domain's siege (siege_store.h). */
struct stats_siege {
    const char *domain;
    int on;
    double rate, baseline, trigger;     /* unknown recipients per minute */
    uint64_t deferred, admitted;        /* clients, by this process */
};
struct stats_extra {
    const struct stats_net *top;
    unsigned ntop;
    const struct stats_siege *siege;    /* one per [directory] domain */
    unsigned nsiege;
    uint64_t blocked_now;
    uint64_t tracked_now;
};

void stats_render_text(struct sbuf *out, const struct stats_extra *x);
void stats_render_json(struct sbuf *out, const struct stats_extra *x);
void stats_render_prometheus(struct sbuf *out, const struct stats_extra *x);

#endif
