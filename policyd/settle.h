#ifndef POLICYD_SETTLE_H
#define POLICYD_SETTLE_H

/*
 * settle - a second look at a network's standing, once the fleet has told
 *
 * A process judges a network on the store's copy of its standing plus
 * what only this process has seen (evidence.h).  What the other processes
 * have seen and not merged yet is missing: their valid recipients may
 * wait up to EVIDENCE_VALID_FLUSH_MS (and a merge's round trip, longer on
 * a loaded machine), while this process's own invalid ones count at once.
 * So a young network near a share threshold, delivering through several
 * policyd, can look above the threshold here and not be.  A decision that
 * acts fleet-wide and for long (siege mode's revocation) is taken on the
 * standing read again once everyone has merged what they had seen when
 * the suspicion arose.
 *
 * settle_add(net) queues a network (once: one already queued keeps its
 * turn); delay_ms later its standing is read (evidence_read: the store's
 * copy and this process's own deltas, faded to then).  The verdict needs
 * a standing that has been still for quiet_ms: no merge into the store's
 * copy by any process (its time, the last merge's), and nothing here
 * that the store has not had.  Then whatever any process recorded before
 * that last merge has followed it (quiet_ms is chosen to cover a lazy
 * valid recipient's wait and its merge), so the valid and the invalid
 * recipients are counted to the same moment.  A standing that moved is
 * read again once it may have been still for quiet_ms; at max_ms after
 * settle_add it is judged as it is.  Then judge(owner, net, tag,
 * standing) is called, and every waiter of that network (settle_wait) in
 * the order they came.  A request that waits gets no answer the verdict
 * could change before the verdict.
 *
 * Stillness is counted from the copy's time by this process's clock, or,
 * when that time is ahead of it (another process's clock runs fast), from
 * when this process first read that same time: a skewed clock costs one
 * more read, not the wait's limit.
 *
 * What this cannot see: a process stalled longer than quiet_ms (stopped,
 * swapping) with valid recipients not merged; their absence looks like
 * stillness.
 *
 * LIMITS
 *	At most max networks queued: settle_add answers -1 beyond (the
 *	caller judges at once).  settle_free drops what is queued, unjudged;
 *	it must have no waiters (they are requests of the runtime that owns
 *	it, and the runtime outlives its requests).  Networks longer than
 *	EVIDENCE_NET_MAX - 1 bytes are not queued (-1).
 */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "evidence.h"
#include "score.h"

struct settle;

/* A waiter, in the caller's storage (a request's job): cb(arg) once, after
 * the verdict.  Fields are settle.c's but for cb and arg. */
struct settle_wait {
    struct settle_wait *next;
    void (*cb)(void *arg);
    void *arg;
};

/* tag: settle_add's; standing: faded to the read; from_store as
 * evidence_cb's. */
typedef void settle_judge(void *owner, const char *net, uint64_t tag,
                          const struct score *standing, int from_store);

struct settle_times {
    uint64_t delay_ms;          /* the first read, after settle_add */
    uint64_t quiet_ms;          /* still for this long: judged */
    uint64_t max_ms;            /* after settle_add: judged as it is */
};

/* ev: not owned, must outlive the settle (or its reads).  Times are set
 * by settle_times before the first settle_add. */
struct settle *settle_new(uv_loop_t *loop, struct evidence *ev, size_t max,
                          settle_judge *judge, void *owner);
/* settle_times - for the networks queued from now on (a reload). */
void settle_times(struct settle *st, const struct settle_times *t);
/* settle_free - judge is not called again; the loop must run afterwards. */
void settle_free(struct settle *st);
/* settle_add - 1: queued, with tag for judge; 0: queued already (its tag
 * stays); -1: full (or net too long). */
int settle_add(struct settle *st, const char *net, uint64_t tag);
/* settle_wait - 1 when net is queued: w->cb(w->arg) after its verdict;
 * else 0 and nothing happens. */
int settle_wait(struct settle *st, const char *net, struct settle_wait *w);
/* settle_count - networks queued or being read. */
size_t settle_count(const struct settle *st);

#endif
