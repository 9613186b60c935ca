#ifndef POLICYD_SIEGE_STORE_H
#define POLICYD_SIEGE_STORE_H

/*
 * siege_store - distributed harvests: counting, polling and the response
 *
 * A botnet spreads its guesses over thousands of addresses, a few each, so
 * no network's standing (harvest.h) ever moves.  What moves is the domain's
 * rate of unknown recipients from clients it does not know.  This module
 * counts that rate fleet-wide, runs siege.h's state machine on it, and
 * tells policy.c which clients to answer differently while a domain is
 * under siege.  Keys in the store (PREFIX = [redis] prefix):
 *
 *   PREFIX "r:" DOMAIN ":" N   incr: unknown recipients of not-established
 *                              clients in bucket N (window/6 long); read
 *                              back with the other buckets of one window
 *   PREFIX "siege:" DOMAIN     set/get: the fleet's mark (siege.h)
 *   PREFIX "s:" NET            set/get: an established network ("c": a
 *                              clean record, for established_days; "r":
 *                              retried during a siege, for retry_max)
 *   PREFIX "p:" NET            incr: a valid recipient of a network not
 *                              known as established; its remaining life
 *                              (established_days) tells when the first was
 *   PREFIX "w:" NET            incr: first try during a siege; its
 *                              remaining life (retry_max) tells its age
 *
 * One uv timer polls every domain each SIEGE_POLL_MS: its window's buckets
 * and its mark, all gets and plain peeks, so one MGET to Redis.  The reply
 * to each count also feeds the state machine, so a siege begins on the
 * request that crosses the trigger, on whichever policyd asked it.
 *
 * Without Redis (store_mem) the counters live in process memory and the
 * marks and established networks in tables of this process.
 *
 * Established: a client's narrow network (harvest.h) whose valid
 * recipients span [siege] retry_min at least (like greylisting: an MTA
 * that keeps delivering for minutes, not a burst of postmaster@), with at
 * least [siege] established_after of them and an invalid share below
 * [harvest] tarpit_share when the last one is asked.  A network known as
 * established whose share reaches tarpit_share loses it (it is harvesting
 * behind a few valid recipients) and starts over.  Exempt clients
 * (whitelisted, SASL) count as established.  A network is written to the
 * store at most every SIEGE_REFRESH_MS by this process, and one read from
 * the store (established, or when its first valid recipient was) is
 * trusted for as long.
 *
 * A deferred RCPT is never looked up, so it counts in the rate as an
 * unknown recipient: a siege lasts as long as the guesses, not one window.
 *
 * Outside a siege a request costs nothing here but, from a network not
 * known here to be established, one counter increment for an unknown
 * recipient, and for a valid one, one increment of "p:" NET while this
 * process does not know when its first was and one write of "s:" NET
 * once it qualifies; a revocation costs two deletes.  All fire and
 * forget.  Under a siege a not-established client costs one more batched
 * read (is it established?) and, with action = defer, one counter
 * increment (its retry) before the answer, the same for every recipient:
 * the directory is never asked for it.
 *
 * LIMITS
 *	The domains are [directory] domains, so the table is bounded.  The
 *	learned baseline is this process's, not the fleet's: a restart
 *	learns it anew (the threshold still holds meanwhile).  This
 *	process knows at most SIEGE_NETS_MAX established and as many pending
 *	networks (the least recently used go first: asked of the store
 *	again).
 */

#include <stdint.h>
#include <uv.h>

#include "../backends/store.h"
#include "config.h"
#include "harvest.h"
#include "stats.h"

#define SIEGE_POLL_MS 1000              /* each domain's rate and mark */
#define SIEGE_REFRESH_MS (300 * 1000)   /* an established network, re-written */

struct siege_store;

typedef void siege_cb(void *arg);

enum siege_response { SIEGE_NONE, SIEGE_DEFER, SIEGE_TARPIT };

/* One client of one request, in the caller's job: a request allocates
 * nothing here.  Fields are siege_store.c's. */
struct siege_client {
    struct siege_store *ss;
    int dom;                    /* index of the recipient's domain; -1 none */
    unsigned gen;               /* of the domain table dom indexes */
    int known;                  /* established (or exempt), as far as known */
    int siege;                  /* the domain is under siege, action != off */
    int admitted;               /* defer: came back in time */
    long long pending_ms;       /* siege_established: since the first valid
                                 * recipient of a network not established;
                                 * -1 none */
    char net[EVIDENCE_NET_MAX];
    siege_cb *cb;
    void *arg;
};

/* store: not owned; shared: 1 when it is Redis (marks and established
 * networks go through it). */
struct siege_store *siege_store_new(uv_loop_t *loop, struct store *store, int shared);
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
 * asked: counted unless the client is established. */
void siege_unknown(struct siege_client *sc);
/* siege_delivered - a valid recipient was asked; hc's narrow standing
 * (before this request) and the age of the network's first valid
 * recipient decide whether the network is now established. */
void siege_delivered(struct siege_client *sc, const struct harvest_client *hc);
/* siege_invalid - an unknown recipient (or trap) was asked: a network known
 * here as established whose narrow standing (hc's, with this recipient)
 * reaches [harvest] tarpit_share loses it, fleet-wide, and sc no longer
 * counts it as established.  Before siege_unknown. */
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
