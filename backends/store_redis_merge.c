/*
 * store_redis_merge - the merge op of store_redis: fold evidence into a
 * standing in Redis
 *
 * SYNOPSIS
 *	#include "store_redis_priv.h"
 *
 *	void sr_merge(s, key, klen, m, cb, arg)
 *
 * DESCRIPTION
 *	One EVALSHA of sr_merge_lua per merge, sent at once (a write is
 *	never batched behind a read).  KEYS[1] is the key, KEYS[2] the
 *	offenders index; ARGV is now_ms, half_life_ms, the delta and the
 *	floor in the wire form of policyd/score.h (the floor "" when there is
 *	none), ttl_ms and the index's bound.
 *
 *	The script GETs the standing (a key of another type fails the
 *	command with WRONGTYPE: wanted, the caller keeps its deltas), reads
 *	an unparsable value as empty, fades it, the delta and the floor to
 *	now (2^(-(now - t) / half_life); nothing fades when t >= now), adds
 *	the delta, raises each field to the floor's, keeps the later block,
 *	t = max(t, now), and SETs it with PX max(ttl_ms, block_until - now):
 *	the arithmetic of score_add() then score_max().  It answers the new
 *	standing's wire form, formatted as score_encode() does (%.6f for the
 *	counts, %.0f for the times), so score_decode() accepts it.
 *
 *	It also keeps the offenders index, KEYS[2] (PREFIX "offenders"): a
 *	sorted set of standing keys, ranked by invalid + traps.  Every
 *	standing fades at the same rate, so the rank is kept on a scale that
 *	does not move with time: log2(weight) + t / 1 h, the log of the
 *	weight brought forward to a fixed epoch at the default half-life.  The
 *	scale is fixed, not [harvest] window: entries ranked before a reload,
 *	or by a fleet member with another window, stay comparable (with the
 *	configured half-life the order of entries of different ages is then
 *	approximate, never upside down by orders of magnitude).  A
 *	standing below half a recipient and not blocked leaves the index;
 *	beyond ARGV[6] (STORE_RANK_MAX) entries the lowest go.  The index
 *	lives as long as the longest-lived standing it was given.
 *
 *	The arguments are formatted once, kept with the command (c->args),
 *	so a NOSCRIPT answer can be retried with EVAL and the body.
 *
 * LIMITS
 *	A stored field above 1e15 makes the value unparsable (as
 *	score_decode), hence empty.  Refusals (OOM, READONLY, WRONGTYPE),
 *	time-outs and a store that is not up answer STORE_ERR.
 */

#include "store_redis_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../policyd/util.h"

#define MERGE_ARGS 6            /* now, half-life, delta, floor, ttl, rank max */

const char sr_merge_lua[] =
    "local function dec(v)\n"
    "  if type(v) ~= 'string' or #v >= 128 then return nil end\n"
    "  local f = {string.match(v, '^(%d+%.?%d*) (%d+%.?%d*) (%d+%.?%d*) "
    "(%d+%.?%d*) (%d+%.?%d*)$')}\n"
    "  if #f ~= 5 then return nil end\n"
    "  for i = 1, 5 do f[i] = tonumber(f[i]) end\n"
    "  if f[4] > 1e15 or f[5] > 1e15 then return nil end\n"
    "  return f\n"
    "end\n"
    "local now = tonumber(ARGV[1])\n"
    "local hl = tonumber(ARGV[2])\n"
    "local function fade(s)\n"
    "  if s[4] > 0 and now > s[4] and hl > 0 then\n"
    "    local f = 2 ^ (-(now - s[4]) / hl)\n"
    "    for i = 1, 3 do s[i] = s[i] * f end\n"
    "    s[4] = now\n"
    "  end\n"
    "  return s\n"
    "end\n"
    "local s = fade(dec(redis.call('GET', KEYS[1])) or {0, 0, 0, 0, 0})\n"
    "local d = fade(dec(ARGV[3]) or {0, 0, 0, 0, 0})\n"
    "for i = 1, 3 do s[i] = s[i] + d[i] end\n"
    "s[5] = math.max(s[5], d[5])\n"
    "local fl = dec(ARGV[4])\n"
    "if fl then\n"
    "  fade(fl)\n"
    "  for i = 1, 3 do s[i] = math.max(s[i], fl[i]) end\n"
    "  s[5] = math.max(s[5], fl[5])\n"
    "end\n"
    "s[4] = math.max(s[4], now)\n"
    "local px = math.max(tonumber(ARGV[5]), s[5] - now, 1)\n"
    "local v = string.format('%.6f %.6f %.6f %.0f %.0f', s[1], s[2], s[3], s[4], s[5])\n"
    "redis.call('SET', KEYS[1], v, 'PX', string.format('%.0f', px))\n"
    "local w = s[1] + s[3]\n"
    "if w >= 0.5 or s[5] > now then\n"
    "  local rank = math.log(math.max(w, 0.5)) / math.log(2)\n"
    "  rank = rank + s[4] / 3600000\n"
    "  local max = tonumber(ARGV[6])\n"
    "  redis.call('ZADD', KEYS[2], rank, KEYS[1])\n"
    "  if redis.call('ZCARD', KEYS[2]) > max then\n"
    "    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(max + 1))\n"
    "  end\n"
    "  if redis.call('PTTL', KEYS[2]) < px then\n"
    "    redis.call('PEXPIRE', KEYS[2], string.format('%.0f', px))\n"
    "  end\n"
    "else\n"
    "  redis.call('ZREM', KEYS[2], KEYS[1])\n"
    "end\n"
    "return v\n";

/* merge_args - the script's ARGV, each NUL-terminated, one after another. */
static char *merge_args(const struct store_merge *m)
{
    char nums[2][UTIL_FMT_U_MAX], delta[SCORE_WIRE_MAX], floor[SCORE_WIRE_MAX];
    char ttl[UTIL_FMT_U_MAX], max[UTIL_FMT_U_MAX];
    const char *parts[MERGE_ARGS] = { nums[0], nums[1], delta, floor, ttl, max };
    size_t lens[MERGE_ARGS], total = 0;
    char *out, *o;

    lens[0] = util_fmt_u(nums[0], m->now_ms);
    lens[1] = util_fmt_u(nums[1], m->half_life_ms);
    lens[2] = score_encode(&m->delta, delta, sizeof(delta));
    floor[0] = '\0';
    lens[3] = m->floor ? score_encode(m->floor, floor, sizeof(floor)) : 0;
    lens[4] = util_fmt_u(ttl, m->ttl_ms);
    lens[5] = util_fmt_u(max, STORE_RANK_MAX);
    for (int i = 0; i < MERGE_ARGS; i++)
        total += lens[i] + 1;
    o = out = xmalloc(total);
    for (int i = 0; i < MERGE_ARGS; i++) {
        memcpy(o, parts[i], lens[i]);
        o[lens[i]] = '\0';
        o += lens[i] + 1;
    }
    return out;
}

int sr_merge_send(struct store_redis *sr, struct rcmd *c, int use_eval)
{
    const char *argv[5 + MERGE_ARGS];
    size_t lens[5 + MERGE_ARGS];
    const char *a = c->args;

    argv[0] = use_eval ? "EVAL" : "EVALSHA";
    argv[1] = use_eval ? sr_merge_lua : sr->merge_sha;
    argv[2] = "2";
    argv[3] = c->key;
    lens[3] = c->klen;
    argv[4] = sr->rank_key;
    lens[4] = sr->rank_klen;
    for (int i = 0; i < MERGE_ARGS; i++) {
        argv[5 + i] = a;
        lens[5 + i] = strlen(a);
        a += lens[5 + i] + 1;
    }
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    return sr_cmd_send(sr, c, 5 + MERGE_ARGS, argv, lens);
}

/* sr_merge_reply - 1 when r was the script's answer (and c is answered). */
int sr_merge_reply(struct rcmd *c, const redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING)
        return 0;
    sr_answer_get(c, STORE_OK, r->str, r->len);
    return 1;
}

void sr_merge(struct store *s, const char *key, size_t klen,
              const struct store_merge *m, store_get_cb *cb, void *arg)
{
    struct store_redis *sr = (struct store_redis *)s;

    if (!sr_usable(sr, klen)) {
        cb(arg, STORE_ERR, NULL, 0);
        return;
    }
    struct rcmd *c = sr_cmd_new(sr, K_MERGE, key, klen);
    c->get_cb = cb;
    c->arg = arg;
    c->args = merge_args(m);
    if (sr_merge_send(sr, c, 0) < 0) {
        sr_cmd_fail(c);
        sr_cmd_release(c);
    }
}
