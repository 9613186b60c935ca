#ifndef POLICYD_POLICY_H
#define POLICYD_POLICY_H

/*
 * policy - the decision for one request, and the runtime it runs on
 *
 * The only module that knows the order of the steps:
 *
 *   state != RCPT ............................................ DUNNO
 *   recipient -> addr_normalize; empty or unqualified ........ DUNNO
 *   domain not in [directory] domains ........................ DUNNO
 *   at once: client -> its standings, narrow and wide (exempt:
 *                      whitelist, SASL)
 *            recipient -> cached answer (L1, then Redis)
 *   standing before this request blocked ..................... blocked action
 *   not cached -> the directory (shared by concurrent asks)
 *   outcome (valid, unknown, trap) -> recorded in the standings
 *   verdict, delayed by what the standing *before* this request earned
 *   (so a valid and an unknown recipient wait alike), on a uv timer
 *
 * [actions] dry_run turns every answer other than DUNNO into "WARN answer"
 * and delays nothing; [harvest] dry_run keeps the answers but applies no
 * delay and no block (harvest.c logs what would have happened).
 *
 * policy_decide() either answers at once (returns NULL and sets *now: the
 * common case, an L1 hit or a state other than RCPT, costs no job and no
 * callback) or starts a job and answers later through done(arg, action),
 * exactly once, never before it returns.  The server keeps at most one job
 * per connection; policy_cancel() (the peer went away) stops the job: done
 * is then never called and the job frees itself when its outstanding
 * asynchronous steps come back; it holds the policy and its runtime until
 * then, even across policy_free().  The action string stays valid until the
 * next call into policy from the loop.
 *
 * policy_reload() swaps in a new config: jobs in flight finish on the
 * runtime they started with, which is freed after the last of them.
 */

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "proto.h"
#include "stats.h"

struct policy;
struct policy_job;

typedef void policy_done_fn(void *arg, const char *action);

/* policy_new - cfg is adopted on success (freed by policy_free). */
struct policy *policy_new(uv_loop_t *loop, struct config *cfg,
                          char *err, size_t errlen);
/* policy_reload - cfg is adopted on success (freed later by policy);
 * on failure nothing changes and err says why. */
int policy_reload(struct policy *p, struct config *cfg, char *err, size_t errlen);
const struct config *policy_config(const struct policy *p);
/* policy_free - after every job has finished or been cancelled; the loop
 * must run afterwards to close the backends' handles. */
void policy_free(struct policy *p);

/* policy_decide - start_us: util_now_us() when the request was read */
struct policy_job *policy_decide(struct policy *p, const struct proto_request *req,
                                 uint64_t start_us, policy_done_fn *done, void *arg,
                                 const char **now);
void policy_cancel(struct policy_job *job);

/* Operator actions, for control.c.  Each answers through cb(arg, text):
 * text is a human-readable result (one or more lines, no trailing newline)
 * or an error starting with "error: ". */
typedef void policy_text_cb(void *arg, int ok, const char *text);
/* policy_client_info - the client's standing at each level; json: as JSON */
void policy_client_info(struct policy *p, const char *ip, int json,
                        policy_text_cb *cb, void *arg);
void policy_unblock(struct policy *p, const char *ip, policy_text_cb *cb, void *arg);
/* policy_siege_info - every domain's siege state (siege_store.h) */
void policy_siege_info(struct policy *p, int json, policy_text_cb *cb, void *arg);
/* policy_siege_force - start (on) or stop domain's siege fleet-wide, with no
 * automatic change for hold_ms (0: none) */
void policy_siege_force(struct policy *p, const char *domain, int on, uint64_t hold_ms,
                        policy_text_cb *cb, void *arg);
/* addr NULL: every cached answer */
void policy_flush(struct policy *p, const char *addr, policy_text_cb *cb, void *arg);
/* policy_stats_extra - the harvest view for the stats renderers; valid until
 * the next call. */
void policy_stats_extra(struct policy *p, struct stats_extra *x);

/* policy_store, policy_evidence - the current runtime's (a reload that
 * changes [redis] replaces them: ask again each time), for fleet.c.
 * policy_store answers NULL when the store is not shared (no Redis). */
struct store;
struct evidence;
struct store *policy_store(struct policy *p);
struct evidence *policy_evidence(struct policy *p);

#endif
