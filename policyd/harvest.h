#ifndef POLICYD_HARVEST_H
#define POLICYD_HARVEST_H

/*
 * harvest - the directory-harvest defence: count, tarpit, block
 *
 * Each client network (client address masked to [harvest] ipv4_prefix /
 * ipv6_prefix) has one counter in the store under PREFIX "h:" NETWORK: the
 * number of invalid recipients it sent in the current window.  It is created
 * with a life of `window`; when it reaches `block_after` its life becomes
 * `block_time`, and while it stands at or above block_after the network is
 * blocked.  So one key and one round trip per step hold both the count and
 * the block, shared by every policyd on the same Redis.
 *
 * The schedule (pure, see harvest_delay_ms): below tarpit_after no delay;
 * from there tarpit_delay * 2^(n - tarpit_after), capped at tarpit_max.
 *
 * Whitelisted networks and (with exempt_sasl) authenticated clients are
 * exempt: never counted, delayed or blocked.
 *
 * The module also keeps a small local view of the networks it has seen
 * (their last known fleet-wide count), for the operator's stats.
 */

#include <stdint.h>

#include "../backends/store.h"
#include "config.h"
#include "proto.h"
#include "stats.h"

struct harvest;

typedef void harvest_cb(void *arg, long long count, long long ttl_ms);

/* One client of one request; also the context of its store round trip, so
 * a step allocates nothing.  Lives in the caller's job. */
struct harvest_client {
    char net[64];           /* "192.0.2.0/24"; "" when exempt */
    int exempt;
    struct harvest *h;
    harvest_cb *cb;
    void *arg;
};

struct harvest *harvest_new(const struct config *cfg, struct store *store);
void harvest_free(struct harvest *h);

/* harvest_classify - the client's network key and exemption.  An
 * unparsable client address (Postfix sends "unknown" in odd cases) is
 * exempt: nothing to count it under. */
void harvest_classify(struct harvest *h, const struct proto_request *req,
                      struct harvest_client *out);

/* The pure schedule. */
uint64_t harvest_delay_ms(const struct config *cfg, long long count);
int harvest_is_blocked(const struct config *cfg, long long count);

/* harvest_state - cb(arg, count, ttl_ms) with the network's count now. */
void harvest_state(struct harvest_client *c, harvest_cb *cb, void *arg);
/* harvest_count - one more invalid recipient; cb gets the new count. */
void harvest_count(struct harvest_client *c, harvest_cb *cb, void *arg);

/* For the operator: text about one network, unblock it, stats view. */
void harvest_client_info(struct harvest *h, const char *ip,
                         void (*cb)(void *arg, int ok, const char *text), void *arg);
void harvest_unblock(struct harvest *h, const char *ip,
                     void (*cb)(void *arg, int ok, const char *text), void *arg);
void harvest_stats(struct harvest *h, struct stats_extra *x);

#endif
