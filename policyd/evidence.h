#ifndef POLICYD_EVIDENCE_H
#define POLICYD_EVIDENCE_H

/*
 * evidence - where the standings of client networks live, kept whole
 *
 * A standing (score.h) is kept under PREFIX "e:" NETWORK in the store
 * (Redis: fleet-wide) and in a table of this process.  The table holds, per
 * network:
 *
 *   view     everything this process knows: the last standing read from the
 *            store, plus every delta recorded here since
 *   pending  deltas recorded here that the store has not acknowledged
 *   sent     the deltas of the merge in flight, if any
 *
 * evidence_read() answers the store's standing plus pending and sent (what
 * the fleet has seen plus what only we have seen), or, when the store cannot
 * answer (down, WRONGTYPE, time-out) or there is no store, the view.  So a
 * decision never uses a lower count than any store has seen for that
 * network, and a refused write (OOM with noeviction, a READONLY replica) is
 * read back from memory until the store takes it.  Reads go through the
 * store's get (GET, batched into one MGET per loop turn with the cache reads).
 * Every request reads: a read skipped because of a network's standing (a
 * recent copy reused while the network looks clean) lets another daemon's
 * trap, block or guesses arrive late, and the time the next request takes
 * tells the client which side of that rule its last recipient put it on
 * (tried and reverted: tests/bench/README.md, session 8).
 *
 * evidence_record() costs no round trip: it adds to pending and the view and
 * marks the network dirty.  A change is merged on the next tick, every
 * EVIDENCE_FLUSH_MS: a new block or trap hit first (up to half of each
 * merge call), then other evidence against a network (invalid
 * recipients; up to three quarters with the blocks), then valid
 * recipients, what one leaves going to the others; so a flood of valid
 * recipients cannot hold evidence back, a flood of unknown ones cannot
 * hold a block back, and no flood starves the other kinds.
 * Valid recipients may wait up to EVIDENCE_VALID_FLUSH_MS (or until
 * unfavourable evidence carries them along; this process counts them at
 * once) while their network is far from every stage and the held back
 * stay small:
 *
 *   - no trap or block in its view;
 *   - the share of invalid recipients (invalid / (invalid + valid)) of
 *     the store's copy, as this process knows it (its view less its own
 *     deltas not yet answered), below half of the lowest share anything
 *     acts on, S = the least of [harvest] tarpit_share and block_share
 *     (both levels use them; siege mode's establishment and revocation
 *     use tarpit_share), set at evidence_new and again at each reload
 *     (evidence_configure);
 *   - the valid recipients held back (pending, sent, and this one) at
 *     most 1 / EVIDENCE_LAZY_PART of that copy's invalid + valid.
 *
 * The skew: meanwhile the fleet has every invalid recipient but not all
 * valid ones, so it sees a share too high, never too low (a harsher
 * judgement, siege's established_after reached later, never a softer
 * one).  The copy is as old as this process's last read, and the store's
 * record only grows meanwhile (other processes merge; all fade alike;
 * deleted by `unblock`, eviction or expiry, it starts again, and the next
 * read here shows it), so the held bound holds against the store's
 * record too: with n processes holding valid recipients back, the fleet
 * misses at most n/16 of a network's record and sees at most (1 + n/16)
 * times its true share: 2 with 16 processes each holding 1/16, which only
 * a network whose record is about a second old can make them do.  That
 * is beyond a tick and a merge's round trip: what was recorded in
 * the last tick is missing whatever the rule, and for a network whose
 * whole record is that young (a burst through several daemons) it can be
 * all (README, "Counts kept whole").  The test is on the store's copy,
 * not the view, because the waiting valid recipients push the view's
 * share down and not the store's.  (Before the held bound a process held
 * any number back, and the fleet judged a burst of 300 valid recipients
 * on a record of 20 on the 20: a block at 0.50 for a true 0.059.)
 *
 * Merges go EVIDENCE_MERGE_BATCH networks to one store call (and at evidence_free
 * everything pending goes).  An acknowledged merge clears a network's
 * pending deltas; a refused one returns them to pending.  One that went
 * out and got no answer (a time-out, a lost connection: the store may
 * still run it) is kept whole and sent again as it was, with the same id,
 * which the store applies once, before newer deltas of its networks;
 * until it is answered its deltas count once, as sent.  At most
 * 4 * EVIDENCE_MERGES_OUT such calls are kept, each for half of
 * STORE_MERGE_ID_MS; beyond, their networks' views go as floors.  At most
 * EVIDENCE_MERGES_OUT merge calls wait for the store at a time (the next go
 * as answers come back), so a read never queues behind a whole flush in the
 * store (Redis runs one connection's commands in order); while the store
 * is slower than the flushes, a network's deltas gather in fewer merges.
 * That bounds the merge rate to EVIDENCE_MERGES_OUT * EVIDENCE_MERGE_BATCH
 * networks a round trip (256: 6400 networks/s with Redis 20 ms away); the
 * sends of evidence_free are not bounded.
 *
 * When the store comes back after refusing or being away, each network that
 * has a view is merged once with floor = its view: counts made here while
 * Redis was away are added back, and counts Redis lost (a restart without
 * persistence) are restored; a block stays in force throughout.  A plain
 * flush never sends a floor, so `policyctl unblock` (evidence_forget, which
 * deletes the key and the entry here) is not undone by another daemon.
 *
 * The table holds at most [harvest] max_tracked networks; the least recently
 * used is dropped first (its pending deltas are sent first when there is a
 * store).  Standings fade with the half-life [harvest] window.
 */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../backends/store.h"
#include "config.h"
#include "score.h"

#define EVIDENCE_FLUSH_MS 50    /* dirty networks are merged this often */
#define EVIDENCE_VALID_FLUSH_MS 1000    /* valid-only, far from a stage: waits at most */
#define EVIDENCE_LAZY_PART 16   /* of a record, valid recipients held back at most */
#define EVIDENCE_MERGE_BATCH STORE_MERGE_MAX    /* networks a merge call */
#define EVIDENCE_MERGES_OUT 8   /* merge calls waiting for the store at most:
                                 * 8 x 32 networks a round trip */
#define EVIDENCE_NET_MAX 64     /* "2001:db8:1234:5678::/64" and the like */

struct evidence;

/* standing: faded to now; from_store: 1 when the store answered. */
typedef void evidence_cb(void *arg, const struct score *standing, int from_store);

struct ev_entry;

/* One network of one request, in the caller's storage (the job's): the
 * context of its read, so a read allocates nothing, and then the handle
 * through which the request's records find the network's entry without a
 * second lookup (the *_via functions).  Fields are evidence.c's. */
struct evidence_read {
    struct evidence *ev;
    struct ev_entry *e;         /* the entry last found, or NULL */
    uint64_t drops;             /* ev's drop count then: e is good while equal */
    char net[EVIDENCE_NET_MAX];
    uint64_t stored_t_ms;       /* after a read: the time of the store's copy
                                 * (its last merge, by whichever process,
                                 * wall clock); 0 when the store did not
                                 * answer or had none */
    evidence_cb *cb;
    void *arg;
};

/* store NULL: this process only.  Neither cfg nor store is owned. */
struct evidence *evidence_new(uv_loop_t *loop, const struct config *cfg,
                              struct store *store);
/* evidence_configure - the settings a reload may change while the table
 * lives on (the lazy bound S, from the shares); evidence_new applies them
 * too.  cfg is not kept. */
void evidence_configure(struct evidence *ev, const struct config *cfg);
/* evidence_free - sends what is pending (fire and forget) and frees; the
 * loop must run afterwards to close the timer. */
void evidence_free(struct evidence *ev);

/* evidence_read - cb exactly once, possibly before the call returns.
 * evidence_read_at: now_ms is the wall clock the caller already read (an
 * answer from this process's view is faded to it). */
void evidence_read(struct evidence *ev, const char *net, struct evidence_read *r,
                   evidence_cb *cb, void *arg);
void evidence_read_at(struct evidence *ev, const char *net, struct evidence_read *r,
                      uint64_t now_ms, evidence_cb *cb, void *arg);
/* evidence_record_via - fold delta (t_ms = now: the time of the record)
 * into the standing of r's network, once evidence_read has answered.
 * evidence_record: the same by name, without a read first (tests and
 * tools that drive the table). */
void evidence_record(struct evidence *ev, const char *net, const struct score *delta);
void evidence_record_via(struct evidence_read *r, const struct score *delta);
/* evidence_recorded - how many records this process has made: a caller
 * that saw the same number before has nothing new in any view. */
uint64_t evidence_recorded(const struct evidence *ev);
/* evidence_view_via - this process's view of r's network (the last
 * standing read plus what was recorded here since), faded to now_ms; 0 and
 * an empty standing when it has none.  Synchronous: no store round trip. */
int evidence_view_via(struct evidence_read *r, uint64_t now_ms, struct score *out);
/* evidence_unmerged_via - 1 when this process holds deltas of r's network
 * that the store has not acknowledged (pending, or a merge in flight). */
int evidence_unmerged_via(struct evidence_read *r);
/* evidence_forget - remove the standing here and in the store (operator
 * unblock); cb gets the store's answer (count = keys removed). */
void evidence_forget(struct evidence *ev, const char *net, store_count_cb *cb,
                     void *arg);

/* evidence_note_stage_via - remember the stage last logged for r's
 * network; returns the one remembered before (-1 when none), so each change
 * is logged once. */
int evidence_note_stage_via(struct evidence_read *r, int stage);

/* evidence_walk - the table's views, faded to now, for the operator's stats. */
typedef void evidence_walk_fn(void *arg, const char *net, const struct score *view);
void evidence_walk(struct evidence *ev, evidence_walk_fn *fn, void *arg);
size_t evidence_tracked(const struct evidence *ev);

#endif
