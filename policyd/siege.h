#ifndef POLICYD_SIEGE_H
#define POLICYD_SIEGE_H

/*
 * siege - is a domain under a distributed harvest?  The state machine
 *
 * Pure, like Postfix's anvil and score.h: no I/O, no clock of its own
 * (every function is given "now", wall-clock milliseconds), no allocation.
 * The counting in the store and the poll timer are siege_store.c's.
 *
 * Input: the fleet-wide rate of unknown recipients asked of one domain by
 * clients that are not established, per minute, over a sliding window, and
 * the fleet's mark for the domain (the last begin or end any policyd
 * published).  Output: the domain's state here, and what changed.
 *
 *   trigger     max(threshold, baseline_factor * baseline)
 *   begin       rate > trigger, unless an operator's stop holds it off
 *   end         rate below low_pct% of the trigger for cooldown without a
 *               break, unless an operator's start holds it on
 *   baseline    learned only outside a siege: the rate, averaged with a
 *               half-life of baseline_half_life (fading, no window edge)
 *
 * A mark is a last-writer-wins register: each change carries its time, and
 * a mark newer than ours is adopted (logged as a begin or an end like our
 * own), so every policyd of the fleet follows the first that saw a change,
 * and two that decide at once agree on the later.
 *
 * Wire form of a mark (siege_mark_encode), three decimal fields:
 * "ON CHANGED_MS HOLD_UNTIL_MS".
 */

#include <stddef.h>
#include <stdint.h>

#define SIEGE_WIRE_MAX 64

struct siege_rules {
    double threshold;               /* unknown recipients per minute */
    double baseline_factor;         /* 0: no learned baseline */
    unsigned low_pct;               /* the lower mark, percent of the trigger */
    uint64_t cooldown_ms;
    uint64_t baseline_half_life_ms;
};

/* The fleet's word on one domain. */
struct siege_mark {
    int on;
    uint64_t changed_ms;            /* when it began or ended; 0: never */
    uint64_t hold_until_ms;         /* operator: no automatic change before */
};

struct siege_domain {
    struct siege_mark m;            /* the state here */
    double rate;                    /* last seen, per minute */
    double baseline;                /* per minute */
    uint64_t seen_ms;               /* last observation; 0: none */
    uint64_t below_since_ms;        /* in a siege: below the lower mark since */
};

enum {
    SIEGE_BEGAN = 1,                /* log it */
    SIEGE_ENDED = 2,                /* log it */
    SIEGE_PUBLISH = 4,              /* our own change: write the mark */
};

/* siege_trigger - the rate above which a siege begins, per minute. */
double siege_trigger(const struct siege_rules *r, const struct siege_domain *d);

/* siege_observe - one observation: the fleet's rate (per minute) and its
 * mark (NULL: none, or the store could not say).  Returns SIEGE_* flags. */
unsigned siege_observe(const struct siege_rules *r, struct siege_domain *d,
                       double rate, const struct siege_mark *fleet, uint64_t now_ms);

/* siege_force - the operator: on or off now, with no automatic change for
 * hold_ms (0: an operator's start ends like an automatic one; a stop may
 * begin again at once).  Returns SIEGE_* flags (always SIEGE_PUBLISH). */
unsigned siege_force(struct siege_domain *d, int on, uint64_t hold_ms, uint64_t now_ms);

/* siege_window_rate - per minute, from the counts of the buckets of one
 * window: b[0] the current bucket, frac (0..1) of it elapsed, b[1..n-1]
 * the ones before it; n-1 buckets make a window of window_ms.  The oldest
 * counts for the part of it still inside the window. */
double siege_window_rate(const long long *b, unsigned n, double frac, uint64_t window_ms);

size_t siege_mark_encode(const struct siege_mark *m, char *buf, size_t cap);
/* siege_mark_decode - 0, or -1 when buf (len bytes) is not a mark. */
int siege_mark_decode(const char *buf, size_t len, struct siege_mark *m);

#endif
