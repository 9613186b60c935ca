#ifndef POLICYD_FLEET_H
#define POLICYD_FLEET_H

/*
 * fleet - every policyd sharing one Redis, at a glance
 *
 * Each second (one uv timer, unref'd) this process takes a sample of its
 * counters; with Redis it then publishes its record into the roster
 * PREFIX "fleet" (store.h roster_put), where a member silent for
 * FLEET_STALE_MS shows as stale and one silent for FLEET_KEEP_MS is
 * dropped.  The record is one line of key=value fields (FLEET_RECORD_MAX
 * bytes at most):
 *
 *   v=1 name=HOST/LISTENER ver=VERSION start=EPOCH digest=HEX16 rps=F
 *   vd=ACCEPTED,UNKNOWN,TEMPFAIL,BLOCKED,DEFERRED lat=B0,...,B16 (a record with
 *   one bucket fewer, from a release before the 100 s bound, still reads)
 *   delayed=N blocked=N tracked=N siege=N redis=up|down dir=ok|errors|down
 *
 * where rps, vd (verdicts) and lat (latency histogram buckets, the
 * bounds of stats.h) cover the last FLEET_WINDOW_MS, so the fleet's
 * latency quantiles come from the summed histograms, not from averaged
 * quantiles.  dir is "down" when every directory query of the window
 * failed, "errors" when some did.  digest is 64-bit FNV-1a of the config
 * file's settings, line by line in order, read when a config is loaded
 * (start, reload): blanks at either end, comments and empty lines do not
 * count, nor [server] listen and control, which name each host's own
 * sockets; any other difference does, the order of lines included.
 *
 * The operator's views (control.c) answer through cb exactly once,
 * possibly before they return:
 *
 *   fleet_info      every instance: up or stale, version, uptime, req/s,
 *                   verdict mix, p99, delayed now, Redis and directory
 *                   state, fleet totals, and a flag on each instance
 *                   whose config digest (or version) is not the one most
 *                   instances that are up run; when two values tie for
 *                   most, there is no majority and every instance is
 *                   flagged (stale ones are flagged but do not vote)
 *   fleet_offenders the N (<= FLEET_OFFENDERS_MAX) networks with the
 *                   highest standing, fleet-wide from Redis's offenders
 *                   index (store.h ranked), else from this process's
 *                   table; with stage and time left
 *   fleet_top       the screen of `policyctl top`: its first line is a
 *                   one-line summary (for a stdout that is not a
 *                   terminal), the rest the full view
 *
 * Without Redis, or while it cannot answer, each view shows this process
 * alone and says so.
 */

#include <stdint.h>
#include <uv.h>

#include "policy.h"

#define FLEET_TICK_MS 1000          /* sample and publish this often */
#define FLEET_WINDOW_MS 10000       /* rates and latency cover this much */
#define FLEET_STALE_MS 5000         /* a record older than this is stale */
#define FLEET_KEEP_MS 3600000ULL    /* and one older than this forgotten */
#define FLEET_RECORD_MAX 1024
#define FLEET_NAME_MAX 200
#define FLEET_OFFENDERS_MAX 100
#define FLEET_TOP_OFFENDERS 10      /* offenders shown by fleet_top */

struct fleet;

typedef void fleet_text_cb(void *arg, int ok, const char *text);

/* fleet_new - p is not owned and must outlive the fleet. */
struct fleet *fleet_new(uv_loop_t *loop, struct policy *p);
/* fleet_free - the loop must run afterwards to close the timer; views in
 * flight still answer. */
void fleet_free(struct fleet *f);

void fleet_info(struct fleet *f, int json, fleet_text_cb *cb, void *arg);
void fleet_offenders(struct fleet *f, unsigned n, int json, fleet_text_cb *cb,
                     void *arg);
void fleet_top(struct fleet *f, fleet_text_cb *cb, void *arg);

#endif
