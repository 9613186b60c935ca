#ifndef POLICYD_SIEGE_STORE_H
#define POLICYD_SIEGE_STORE_H

/*
 * siege_store - distributed harvests: counting, polling and the response
 *
 * A botnet spreads its guesses over thousands of addresses, a few each, so
 * no network's standing (harvest.h) ever moves.  What moves is the domain's
 * rate of unknown recipients.  This module counts that rate fleet-wide,
 * runs siege.h's state machine on it, and tells policy.c which clients to
 * answer differently while a domain is under siege.  Keys in the store
 * (PREFIX = [redis] prefix):
 *
 *   PREFIX "r:" DOMAIN ":" N   incr by: unknown recipients (of clients
 *                              not exempt) in bucket N (window/6 long);
 *                              read back with the other buckets of one
 *                              window
 *   PREFIX "siege:" DOMAIN     set/get: the fleet's mark (siege.h)
 *   PREFIX "s:" NET            set/get: an established network ("c": a
 *                              clean record, for established_days; "r":
 *                              retried during a siege, for retry_max)
 *   PREFIX "p:" NET            incr: the visits of a network not known
 *                              as established; its remaining life
 *                              (retry_max) tells when the first was
 *   PREFIX "w:" NET            incr: first try during a siege; its
 *                              remaining life (retry_max) tells its age
 *
 * One uv timer polls every domain each SIEGE_POLL_MS: its window's buckets
 * and its mark, all gets and plain peeks, so one MGET to Redis.
 *
 * Unknown recipients are counted here first and sent as one increment
 * per domain each SIEGE_COUNT_MS tick (and when their bucket ends), not
 * one per recipient: a harvest costs Redis a few commands a second.  The
 * reply to each increment feeds the state machine and is kept as the
 * domain's last known counts; when those and the counts not sent yet
 * cross the trigger (outside a siege), they are sent at once, so a siege
 * begins on the request that crosses the trigger as this process knows
 * it, and within a tick (or a poll) of the fleet's.  The counts not sent
 * are sent before a reload's settings apply (to the keys of the old ones,
 * a dropped domain's too) and at siege_store_free (they land as Redis
 * writes left at close do: store_redis.c, CLOSE).
 *
 * Without Redis (store_mem) the counters live in process memory and the
 * marks and established networks in tables of this process.
 *
 * Established: a client's narrow network (harvest.h) that came back like
 * an MTA (like greylisting): its "p:" count reaches [siege]
 * established_after visits at least [siege] retry_min after the first,
 * before [siege] retry_max has passed (else the count starts over), and
 * its narrow standing's invalid share is below [harvest] tarpit_share at
 * that visit's first recipient.  A visit: the valid recipients of a
 * network that this process counts once per visit interval, retry_min /
 * established_after (100 s by default), so a network delivering all
 * along has established_after visits before retry_min and is established
 * at retry_min, a burst is one visit, and a sender of one message an
 * hour counts each.  When one more visit would establish it, the visit
 * interval ends at retry_min: its next visit, however soon, does.  A
 * fleet of N policyd may count one visit up to N times: the span of
 * retry_min still holds.  The count is the store's, not the standing's.
 * Exempt clients (whitelisted, SASL) count as established.
 *
 * Revoked: at an unknown recipient (or trap) from which the narrow
 * standing has SIEGE_REVOKE_MIN_INVALID invalid recipients or more and a
 * share of tarpit_share or more, "s:" NET and "p:" NET are deleted
 * whether or not this process knows the network as established (it may
 * have been established through another policyd, or before a restart),
 * at most once per network per SIEGE_REFRESH_MS by this process, which
 * then knows it as not established for as long, and counts its next
 * visit at once.  Logged (event=revoke, with the standing that revoked
 * it) only when it was established, here or in the store: bots that
 * never were make no lines.
 *
 * With Redis the standing seen at that recipient lacks what the other
 * policyd have not merged yet (their valid recipients wait up to
 * EVIDENCE_VALID_FLUSH_MS, evidence.h, while the invalid ones go at
 * once), so for a network that is established (known here, or read from
 * "s:" NET) it only makes the network a suspect: the verdict is taken on
 * its standing once that has been still for SIEGE_QUIET_MS (settle.h: no
 * merge by any policyd, nothing unmerged here), first read
 * SIEGE_SETTLE_MS after the suspicion, at the latest SIEGE_SETTLE_MAX_MS
 * after it (less when [harvest] postfix_timeout leaves less room: the
 * wait fits in what Postfix waits for an answer).  During a siege, a
 * request of an established network for a domain under siege waits for
 * the verdict before it is answered when the
 * network is a suspect here or when its standing, as read for this
 * request, already has SIEGE_REVOKE_MIN_INVALID invalid recipients at
 * tarpit_share (so another policyd's guesses make it wait here too, and
 * a suspicion lost with a restart is raised again).  A network not
 * established is revoked at once (its visits start over; nothing else is
 * lost), as is any without Redis, or beyond SIEGE_SUSPECTS_MAX suspects.

 * Every unknown recipient counts toward its domain's rate, an established
 * client's too (a botnet that earned establishment first still makes a
 * siege), but an exempt client's: the operator trusts those.  The response spares established clients: they are never
 * deferred or tarpitted by a siege.
 *
 * A network is written to the store at most every SIEGE_REFRESH_MS by
 * this process, and one read from the store is trusted for as long.  A
 * read that fails (the store is down) takes the client as established for
 * that request, and is logged at most every SIEGE_STORE_LOG_MS: without
 * Redis policyd carries on, and the harvest rules still apply.
 *
 * A deferred RCPT is never looked up, so it counts in the rate as an
 * unknown recipient: a siege lasts as long as the guesses, not one window.
 *
 * Outside a siege a request costs nothing here but, for an unknown
 * recipient, a clock read and the estimate (a sum of the window's
 * buckets; the increment goes out once a tick), and for a valid one from
 * a network not known here to be established, a table lookup and, once
 * a visit, one increment of "p:" NET
 * and, once it qualifies, one write of "s:" NET; a revocation costs two
 * deletes (with Redis, and a read once the suspicion settles).  All fire
 * and forget.  Under a siege a not-established client costs one more
 * batched read (is it established?) and, with action = defer, one counter
 * increment (its retry) before the answer, the same for every recipient:
 * the directory is never asked for it.
 *
 * LIMITS
 *	The domains are [directory] domains, so the table is bounded.  The
 *	learned baseline is this process's, not the fleet's: a restart
 *	learns it anew (the threshold still holds meanwhile).  This
 *	process knows at most SIEGE_NETS_MAX networks (established, or
 *	revoked here lately; the least recently used go first: asked of
 *	the store again), and SIEGE_COUNTED_MAX networks counted in their
 *	visit interval (the least recently used go first: their next valid
 *	recipient counts again).
 */

#include <stdint.h>
#include <uv.h>

#include "../backends/store.h"
#include "config.h"
#include "harvest.h"
#include "settle.h"
#include "stats.h"

#define SIEGE_POLL_MS 1000              /* each domain's rate and mark */
#define SIEGE_COUNT_MS 50               /* unknown recipients, sent per domain */
#define SIEGE_REFRESH_MS (300 * 1000)   /* an established network, re-written */
/* invalid recipients (faded, to the nearest whole) a narrow standing needs
 * before its share can revoke: a single typo after a quiet hour never does */
#define SIEGE_REVOKE_MIN_INVALID 2
#define SIEGE_STORE_LOG_MS 10000        /* store errors in a siege: a line per */
/* a revocation's verdict waits for the fleet's valid recipients: a
 * standing still for the longest a lazy one waits and two ticks (its
 * merge) has them all; first read a tick after that could be so; judged
 * as it is at SIEGE_SETTLE_MAX_MS, or sooner when [harvest]
 * postfix_timeout, less the reads around the wait and a second, is less */
#define SIEGE_QUIET_MS (EVIDENCE_VALID_FLUSH_MS + 2 * EVIDENCE_FLUSH_MS)
#define SIEGE_SETTLE_MS (SIEGE_QUIET_MS + 2 * EVIDENCE_FLUSH_MS)
#define SIEGE_SETTLE_MAX_MS 10000
#define SIEGE_SUSPECTS_MAX 10000        /* awaiting their verdict at once */

struct siege_store;

typedef void siege_cb(void *arg);

enum siege_response { SIEGE_NONE, SIEGE_DEFER, SIEGE_TARPIT };

/* One client of one request, in the caller's job: a request allocates
 * nothing here.  Fields are siege_store.c's and siege_est.c's. */
struct siege_client {
    struct siege_store *ss;
    int dom;                    /* index of the recipient's domain; -1 none */
    unsigned gen;               /* of the domain table dom indexes */
    int known;                  /* established (or exempt), as far as known */
    int siege;                  /* the domain is under siege, action != off */
    int admitted;               /* defer: came back in time */
    long long pending_ms;       /* siege_established: since the first visit
                                 * of a network not established; -1 none */
    long long pending_visits;   /* and its visits since */
    char net[EVIDENCE_NET_MAX];
    struct settle_wait wait;    /* for a suspect's verdict */
    siege_cb *cb;
    void *arg;
};

/* store, ev: not owned; shared: 1 when it is Redis (marks and established
 * networks go through it; ev's standings are then the fleet's). */
struct siege_store *siege_store_new(uv_loop_t *loop, struct store *store, int shared,
                                    struct evidence *ev);
/* siege_store_configure - the settings of cfg (copied: cfg may go first);
 * state of domains that stay is kept. */
void siege_store_configure(struct siege_store *ss, const struct config *cfg);
/* siege_store_free - before the store is freed; the loop must run after. */
void siege_store_free(struct siege_store *ss);

/* siege_check - before the recipient's status is known: is the domain under
 * siege, and, if so, is the client established?  cb(arg) once, possibly
 * before it returns. */
void siege_check(struct siege_store *ss, const char *domain,
                 const struct harvest_client *hc, struct siege_client *sc,
                 siege_cb *cb, void *arg);
/* siege_response - after siege_check (and siege_admit for defer). */
enum siege_response siege_response(const struct siege_client *sc);
/* siege_admit - defer: has the client come back between retry_min and
 * retry_max?  cb(arg) once, possibly before it returns. */
void siege_admit(struct siege_client *sc, siege_cb *cb, void *arg);
/* siege_unknown - an unknown recipient (or trap), or a deferred one, was
 * asked: counted toward the domain's rate unless the client is exempt. */
void siege_unknown(struct siege_client *sc);
/* siege_delivered - a valid recipient was asked; the network's visits
 * since its first (their count and its age, in the store) and hc's
 * narrow share with this one decide whether it is now established. */
void siege_delivered(struct siege_client *sc, const struct harvest_client *hc);
/* siege_suspect - after siege_check and the reads of hc's standings: in a
 * siege, an established client that is a suspect (see above) waits for
 * the verdict.  1: cb(arg) once it is known (sc then knows the client as
 * not established if it was revoked); 0: nothing to wait for. */
int siege_suspect(struct siege_client *sc, const struct harvest_client *hc,
                  siege_cb *cb, void *arg);
/* siege_invalid - an unknown recipient (or trap) was asked: a network
 * whose narrow standing (hc's, with this recipient) has
 * SIEGE_REVOKE_MIN_INVALID invalid recipients and reaches [harvest]
 * tarpit_share is not established, fleet-wide, at once or once its
 * suspicion is confirmed (see above). */
void siege_invalid(struct siege_client *sc, const struct harvest_client *hc);

/* For the operator. */
void siege_info(struct siege_store *ss, int json, struct sbuf *out);
/* siege_force - start (on) or stop a siege of domain, fleet-wide, held for
 * hold_ms (0: as an automatic one); -1 when domain is not ours. */
int siege_force_domain(struct siege_store *ss, const char *domain, int on,
                       uint64_t hold_ms);
/* siege_established - for `policyctl client`: is hc's network
 * established, or on its way?  Fills sc for siege_established_text;
 * cb(arg) once. */
void siege_established(struct siege_store *ss, const struct harvest_client *hc,
                       struct siege_client *sc, siege_cb *cb, void *arg);
/* siege_established_text - its answer: a line "established: ..." (json:
 * the members "established" and, when pending, "pending_s"). */
void siege_established_text(const struct siege_client *sc, int json, struct sbuf *out);
void siege_stats(struct siege_store *ss, struct stats_extra *x);

#endif
