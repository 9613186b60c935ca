#ifndef POLICYD_HARVEST_H
#define POLICYD_HARVEST_H

/*
 * harvest - the directory-harvest defence: judge a client by its evidence
 *
 * Each client is seen at two levels: its own network (the client address
 * masked to [harvest] ipv4_prefix / ipv6_prefix) and a wide one
 * (ipv4_wide_prefix / ipv6_wide_prefix, 0 = off), so a harvester rotating
 * through the addresses of one /24 is judged as that /24.  Each level has a
 * standing (score.h: fading counts of invalid and valid recipients and trap
 * hits, and a block) kept by evidence.c, fleet-wide in Redis.
 *
 * A request is judged in two steps, so that its own recipient can never
 * change its answer's timing (no oracle):
 *
 *   harvest_state()   reads both standings before the recipient is known;
 *                     harvest_decide() then gives the block and the delay
 *                     (the stricter of the two levels); harvest_refresh()
 *                     adds, once the directory has answered, what other
 *                     requests of the same client recorded meanwhile
 *   harvest_record()  once the recipient is known: valid, invalid or trap;
 *                     an unknown recipient or a trap that makes the standing
 *                     earn a block blocks the network from the next request
 *                     on, fleet-wide, for block_time.  When it ends, the next
 *                     unknown recipient renews it if the evidence (fading)
 *                     still earns one; valid recipients never do.
 *
 * Whitelisted networks and (with exempt_sasl) authenticated clients are
 * exempt: never read, recorded, delayed or blocked.  With [harvest] dry_run
 * the stages are logged and counted, but nothing is delayed or blocked.
 *
 * Each change of a network's stage is logged once by this process, as one
 * line of key=value fields:
 *   harvest: event=tarpit|block|block_end|trap level=narrow|wide net=NET
 *            invalid=N valid=N share=F [delay=S] [until=EPOCH] [why=...]
 *            [dry_run=yes]
 */

#include <stdint.h>

#include "address.h"
#include "config.h"
#include "evidence.h"
#include "proto.h"
#include "score.h"
#include "stats.h"

struct harvest;

typedef void harvest_cb(void *arg);

struct harvest_client;

struct harvest_level {
    struct harvest_client *owner;
    char net[EVIDENCE_NET_MAX];
    struct evidence_read rd;
    struct score before;        /* the standing before this request */
    struct score_verdict v;     /* what it earns */
};

/* One client of one request; also the context of its reads, so a request
 * allocates nothing.  Lives in the caller's job. */
struct harvest_client {
    struct harvest *h;
    int exempt;                 /* not judged: trusted, or no address */
    int trusted;                /* whitelisted, (exempt_sasl) SASL, or the
                                 * defence is off: spared by siege mode too */
    unsigned nlevels;           /* levels in use: 1, or 2 with a wide level;
                                 * the networks are set even when exempt
                                 * (siege mode counts by them) */
    unsigned outstanding;       /* reads not yet back */
    uint64_t now_ms;            /* wall clock of the reads, then of
                                 * harvest_refresh */
    uint64_t recorded;          /* evidence_recorded() at the reads */
    struct harvest_level lv[SCORE_LEVELS];
    harvest_cb *cb;
    void *arg;
};

struct harvest_decision {
    int blocked;                /* refuse: the blocked action */
    uint64_t delay_ms;          /* wait this long before the answer */
};

enum harvest_outcome { OUTCOME_VALID, OUTCOME_INVALID, OUTCOME_TRAP };

struct harvest *harvest_new(const struct config *cfg, struct evidence *ev);
void harvest_free(struct harvest *h);

/* harvest_classify - the client's networks and exemption.  An unparsable
 * client address (Postfix sends "unknown" in odd cases) is exempt: nothing
 * to count it under. */
void harvest_classify(struct harvest *h, const struct proto_request *req,
                      struct harvest_client *out);
/* harvest_state - read the standings; cb(arg) once, possibly before it
 * returns.  An exempt client answers at once. */
void harvest_state(struct harvest_client *c, harvest_cb *cb, void *arg);
/* harvest_refresh - once the recipient is known, before its outcome is
 * recorded: add what this process recorded for the client's networks since
 * harvest_state read them (concurrent requests of the same client), so a
 * harvester asking its guesses in parallel is judged on the ones already
 * answered.  Its own recipient still counts for nothing: no oracle.
 * waited: the request left the loop turn of harvest_state (a round trip),
 * so the clock is read again; else the reads' time is still now, and it
 * is the time of the record. */
void harvest_refresh(struct harvest_client *c, int waited);
/* harvest_decide - after harvest_state (and harvest_refresh): what the
 * standing before this request earns (as if not dry_run: the caller
 * applies dry_run). */
void harvest_decide(const struct harvest_client *c, struct harvest_decision *d);
/* harvest_record - the recipient's outcome, after harvest_refresh (at
 * its time); no round trip. */
void harvest_record(struct harvest_client *c, enum harvest_outcome o);
/* harvest_is_trap - 1 when a is one of [harvest] traps. */
int harvest_is_trap(const struct harvest *h, const struct address *a);

/* For the operator: one client's levels (text, or JSON with json), unblock
 * (both levels), the stats view. */
void harvest_client_info(struct harvest *h, const char *ip, int json,
                         void (*cb)(void *arg, int ok, const char *text), void *arg);
void harvest_unblock(struct harvest *h, const char *ip,
                     void (*cb)(void *arg, int ok, const char *text), void *arg);
void harvest_stats(struct harvest *h, struct stats_extra *x);

#endif
