#ifndef POLICYD_SIEGE_STORE_PRIV_H
#define POLICYD_SIEGE_STORE_PRIV_H

/*
 * siege_store_priv - what siege_store.c (lifetime, keys, events, polling,
 * counting: the domain-wide rate side) and siege_est.c (the request path,
 * established networks) share.  Not for any other module: the rest of
 * policyd sees only siege_store.h.
 */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "log.h"
#include "settle.h"
#include "siege.h"
#include "siege_store.h"

struct cache;

#define SIEGE_BUCKETS 6             /* buckets in one window */
#define SIEGE_SLOTS (SIEGE_BUCKETS + 1)  /* read per poll: the window and one */
#define SIEGE_KEY_MAX 400           /* prefix (64) + domain (255) + bucket */
#define SIEGE_NETS_MAX 100000       /* established networks known here */
#define SIEGE_COUNTED_MAX 100000    /* networks whose visit was counted */
#define SIEGE_MARK_TTL_MS (86400ULL * 1000) /* a mark outlives every daemon */

/* KNOWN_ASSUMED: the store did not answer during a siege (fail open) */
enum { KNOWN_NO, KNOWN_CLEAN, KNOWN_RETRIED, KNOWN_EXEMPT, KNOWN_ASSUMED };

struct sdom {
    char name[256];
    struct siege_domain st;
    uint64_t deferred, admitted;    /* clients, by this process */
    uint64_t idx;                   /* bucket of b[0] */
    long long b[SIEGE_SLOTS];       /* the last known counts: of the last
                                     * poll, or reply to an increment */
    long long unsent;               /* unknown recipients not sent yet, */
    uint64_t unsent_idx;            /* all of this bucket */
};

struct siege_store {
    uv_loop_t *loop;
    uv_timer_t timer;               /* the poll */
    uv_timer_t count_timer;         /* the unsent counts, once a tick */
    struct store *store;
    int shared;
    int refs;                       /* owner, timers, outstanding store ops */
    int closing;
    unsigned gen;                   /* bumped when the domain table changes */
    int polling;
    struct cache *nets;             /* networks known here: established, or
                                     * not (revoked here) */
    struct cache *counted;          /* networks whose visit was counted
                                     * lately (for visit_ms) */
    struct settle *settle;          /* suspected networks (with Redis) */
    uint64_t cleared;               /* suspicions the verdict cleared */
    struct log_limiter store_rl;    /* store errors in a siege */
    /* settings, copied from the config */
    char prefix[CONFIG_PREFIX_MAX + 1];
    enum siege_action_cfg action;
    struct siege_rules rules;
    uint64_t window_ms, retry_min_ms, retry_max_ms, delay_ms, established_ms;
    uint64_t visit_ms;              /* retry_min / established_after */
    unsigned established_after, tarpit_share;
    struct sdom *doms;
    size_t ndoms;
    struct stats_siege *view;       /* for siege_stats */
};

/* siege_store.c: lifetime, domains, keys */
/* ss_unref - a reference (owner, timers, outstanding store ops) is
 * dropped: the last one frees ss */
void ss_unref(struct siege_store *ss);
/* ss_dom_find - the domain named name, NULL when it is not ours */
struct sdom *ss_dom_find(struct siege_store *ss, const char *name);
/* ss_key_of - PREFIX kind name suffix in out (SIEGE_KEY_MAX, cut
 * short); its length */
size_t ss_key_of(const struct siege_store *ss, char *out, const char *kind,
                 const char *name, const char *suffix);

/* siege_est.c: clients and established networks */
/* ss_dom_of - the client's domain, NULL when a reload changed the table
 * since its siege_check */
struct sdom *ss_dom_of(const struct siege_client *sc);
/* ss_settled - the settle's judge (siege_store_new hands it over) */
settle_judge ss_settled;

#endif
