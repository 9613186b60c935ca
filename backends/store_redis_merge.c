/*
 * store_redis_merge - the merge op of store_redis: fold evidence into
 * standings in Redis, several in one call
 *
 * SYNOPSIS
 *	#include "store_redis_priv.h"
 *
 *	void sr_merge(s, m, cb, arg)
 *
 * DESCRIPTION
 *	One EVALSHA of sr_merge_lua per call, for up to STORE_MERGE_MAX
 *	standings, sent at once (a write is never batched behind a read).
 *	KEYS[1..N] are the standings' keys, KEYS[N+1] the offenders index,
 *	KEYS[N+2] the call's id key; ARGV is now_ms, half_life_ms, ttl_ms,
 *	the index's bound, the id's life (STORE_MERGE_ID_MS), then for each
 *	key its delta, as the five fields of the wire form of
 *	policyd/score.h one word each (the script reads them with tonumber:
 *	a pattern match per delta cost a tenth of the key's time in Redis),
 *	and its floor in the wire form ("" when there is none).  One call for many networks
 *	spares Redis the command and script-call overhead of each (and the
 *	index's trim and expiry are done once per call, not once per key).
 *
 *	The script first reads every standing with one MGET (a key of
 *	another type reads as nil there, and EXISTS then tells it from an
 *	absent one: a redis.call per key saved; a key named twice in a
 *	call folds its second delta into what the first wrote, as if read
 *	again), then SETs the id key NX with the id's life: when it
 *	existed, this call was applied before (a time-out or a lost
 *	connection made the caller send it again), and the script applies
 *	nothing but answers each key's standing as it is (an absent key as
 *	an empty standing, a key of another type nil), so the caller's
 *	floors and views still work.  That SET is the call's first write:
 *	a refusal (OOM, READONLY) leaves no id behind.  An empty id key
 *	name is a call without an id (one never sent again): no SET,
 *	applied as is.
 *
 *	For each key (a key of another type is refused alone and left as
 *	it is, so one bad key never refuses its neighbours' deltas) the
 *	script reads an unparsable value as empty, fades it, the delta and
 *	the floor to now (2^(-(now - t) / half_life); nothing fades when t
 *	>= now), adds the delta, raises each field to the floor's, keeps
 *	the later block, t = max(t, now), and SETs it with PX max(ttl_ms,
 *	block_until - now): the arithmetic of score_add() then
 *	score_max().  It answers an array, per key the new standing's wire
 *	form, formatted as score_encode() does (%.6f for the counts, %.0f
 *	for the times, or %d for a whole number of milliseconds, the same
 *	text without glibc's multiprecision path), so score_decode()
 *	accepts it, or nil for a refused key.  A refusal of the whole call
 *	(OOM with noeviction, READONLY) comes at the first SET, before
 *	anything was written: Redis refuses a script's write for want of
 *	memory only while the script has written nothing, so the keys of
 *	one call are applied all (but the WRONGTYPE ones) or none.
 *
 *	It also keeps the offenders index, KEYS[N+1] (PREFIX "offenders"): a
 *	sorted set of standing keys, ranked by invalid + traps.  Every
 *	standing fades at the same rate, so the rank is kept on a scale that
 *	does not move with time: log2(weight) + t / 1 h, the log of the
 *	weight brought forward to a fixed epoch at the default half-life.  The
 *	scale is fixed, not [harvest] window: entries ranked before a reload,
 *	or by a fleet member with another window, stay comparable (with the
 *	configured half-life the order of entries of different ages is then
 *	approximate, never upside down by orders of magnitude).  A
 *	standing below half a recipient and not blocked leaves the index;
 *	beyond the bound (STORE_RANK_MAX) entries the lowest go.  The index
 *	lives as long as the longest-lived standing it was given.  A key
 *	whose delta has only valid recipients and no floor leaves the index
 *	as it is (most merges: half a merge's cost in Redis is the index):
 *	its weight did not grow, and on that scale a fading standing's rank
 *	does not move at the default half-life (approximately at another;
 *	one below half a recipient stays until its next invalid one, or the
 *	bound, or a reader's walk finds its key gone).  Its
 *	commands are pcalls: a corrupted index is not a reason to refuse the
 *	standings, already written by then.
 *
 *	The arguments are formatted once, kept with the command (c->args),
 *	so a NOSCRIPT answer can be retried with EVAL and the body.
 *
 * LIMITS
 *	STORE_MERGE_MAX keys a call.  A stored field above 1e15 makes the
 *	value unparsable (as score_decode), hence empty.  Refusals (OOM,
 *	READONLY) and a store that is not up answer STORE_ERR; a call sent
 *	and not answered (time-out, connection lost) STORE_UNSURE.  One id
 *	key per call lives STORE_MERGE_ID_MS (a few bytes each: 200 calls/s
 *	keep 60000 of them).
 */

#include "store_redis_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../policyd/util.h"

#define MERGE_SHARED 5          /* ARGV: now, half-life, ttl, rank max, id life */
#define MERGE_PER_KEY 6         /* ARGV: the delta's five fields, the floor */
#define MERGE_HEAD 3            /* EVALSHA SHA NUMKEYS */

const char sr_merge_lua[] =
    "local fmt, tonum, mmax = string.format, tonumber, math.max\n"
    "local now = tonum(ARGV[1])\n"
    "local hl = tonum(ARGV[2])\n"
    "local ttl = tonum(ARGV[3])\n"
    "local max = tonum(ARGV[4])\n"
    "local pat = '^(%d+%.?%d*) (%d+%.?%d*) (%d+%.?%d*) (%d+%.?%d*) (%d+%.?%d*)$'\n"
    "local function dec(v)\n"
    "  if type(v) ~= 'string' or #v >= 128 then return nil end\n"
    "  local i, v2, p, t, u = string.match(v, pat)\n"
    "  if not u then return nil end\n"
    "  i, v2, p, t, u = tonum(i), tonum(v2), tonum(p), tonum(t), tonum(u)\n"
    "  if t > 1e15 or u > 1e15 then return nil end\n"
    "  return i, v2, p, t, u\n"
    "end\n"
    "local function ms(x)\n"
    "  if x % 1 == 0 then return fmt('%d', x) end\n"
    "  return fmt('%.0f', x)\n"
    "end\n"
    "local function fade(i, v, p, t)\n"
    "  if t > 0 and now > t and hl > 0 then\n"
    "    local f = 2 ^ (-(now - t) / hl)\n"
    "    return i * f, v * f, p * f, now\n"
    "  end\n"
    "  return i, v, p, t\n"
    "end\n"
    "local n = #KEYS - 2\n"
    "local idx = KEYS[n + 1]\n"
    "local out, add, rem, life, done = {}, {}, {}, 0, {}\n"
    "local vals = redis.call('MGET', unpack(KEYS, 1, n))\n"
    "local function other(k)\n"
    "  return not vals[k] and redis.call('EXISTS', KEYS[k]) == 1\n"
    "end\n"
    "if KEYS[n + 2] ~= '' and\n"
    "   not redis.call('SET', KEYS[n + 2], '1', 'PX', ARGV[5], 'NX') then\n"
    "  for k = 1, n do\n"
    "    if other(k) then out[k] = false\n"
    "    else out[k] = vals[k] or '0 0 0 ' .. ms(now) .. ' 0' end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "for k = 1, n do\n"
    "  local key, a = KEYS[k], 6 * k\n"
    "  local g = done[key]\n"
    "  if g == nil and other(k) then\n"
    "    out[k] = false\n"
    "  else\n"
    "    local i, v, p, t, u = dec(g or vals[k])\n"
    "    if not i then i, v, p, t, u = 0, 0, 0, 0, 0 end\n"
    "    i, v, p, t = fade(i, v, p, t)\n"
    "    local di, dv, dp = fade(tonum(ARGV[a]), tonum(ARGV[a + 1]), tonum(ARGV[a + 2]),\n"
    "                            tonum(ARGV[a + 3]))\n"
    "    local du = tonum(ARGV[a + 4])\n"
    "    i, v, p, u = i + di, v + dv, p + dp, mmax(u, du)\n"
    "    local fi, fv, fp, ft, fu\n"
    "    if ARGV[a + 5] ~= '' then fi, fv, fp, ft, fu = dec(ARGV[a + 5]) end\n"
    "    if fi then\n"
    "      fi, fv, fp = fade(fi, fv, fp, ft)\n"
    "      i, v, p, u = mmax(i, fi), mmax(v, fv), mmax(p, fp), mmax(u, fu)\n"
    "    end\n"
    "    t = mmax(t, now)\n"
    "    local px = mmax(ttl, u - now, 1)\n"
    "    local val = fmt('%.6f %.6f %.6f ', i, v, p) .. ms(t) .. ' ' .. ms(u)\n"
    "    redis.call('SET', key, val, 'PX', ms(px))\n"
    "    out[k], done[key] = val, val\n"
    "    local w = i + p\n"
    "    if di <= 0 and dp <= 0 and du <= 0 and not fi then\n"
    "    elseif w >= 0.5 or u > now then\n"
    "      add[#add + 1] = math.log(mmax(w, 0.5)) / math.log(2) + t / 3600000\n"
    "      add[#add + 1] = key\n"
    "      life = mmax(life, px)\n"
    "    else\n"
    "      rem[#rem + 1] = key\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function bad(r) return type(r) == 'table' and r.err ~= nil end\n"
    "if #add > 0 and not bad(redis.pcall('ZADD', idx, unpack(add))) then\n"
    "  local c = redis.pcall('ZCARD', idx)\n"
    "  if not bad(c) and c > max then\n"
    "    redis.pcall('ZREMRANGEBYRANK', idx, 0, -(max + 1))\n"
    "  end\n"
    "  local p = redis.pcall('PTTL', idx)\n"
    "  if not bad(p) and p < life then\n"
    "    redis.pcall('PEXPIRE', idx, ms(life))\n"
    "  end\n"
    "end\n"
    "if #rem > 0 then redis.pcall('ZREM', idx, unpack(rem)) end\n"
    "return out\n";

/* The command's words, formatted once (EVALSHA and the sha are put in
 * front at each send): one allocation, freed with the command. */
struct merge_args {
    size_t n;                   /* keys merged */
    int argc;
    const char **argv;
    size_t *lens;               /* then the words' bytes */
};

/* put - the next word at *o; its slot in a. */
static char *put(struct merge_args *a, char *o, const char *w, size_t len)
{
    memcpy(o, w, len);
    a->argv[a->argc] = o;
    a->lens[a->argc++] = len;
    return o + len;
}

/* merge_args - KEYS and ARGV of m, after MERGE_HEAD empty slots. */
static struct merge_args *merge_args(const struct store_redis *sr,
                                     const struct store_merge *m)
{
    char num[MERGE_SHARED][UTIL_FMT_U_MAX], wire[2][SCORE_WIRE_MAX];
    size_t nlen[MERGE_SHARED];
    int argc = MERGE_HEAD + (int)m->n + 2 + MERGE_SHARED + MERGE_PER_KEY * (int)m->n;
    size_t bytes = sr->rank_klen + m->id_klen + 2 * m->n * SCORE_WIRE_MAX;
    struct merge_args *a;
    char *o;

    nlen[0] = util_fmt_u(num[0], m->now_ms);
    nlen[1] = util_fmt_u(num[1], m->half_life_ms);
    nlen[2] = util_fmt_u(num[2], m->ttl_ms);
    nlen[3] = util_fmt_u(num[3], STORE_RANK_MAX);
    nlen[4] = util_fmt_u(num[4], STORE_MERGE_ID_MS);
    for (int i = 0; i < MERGE_SHARED; i++)
        bytes += nlen[i];
    for (size_t i = 0; i < m->n; i++)
        bytes += m->items[i].klen;
    a = xmalloc(sizeof(*a) + (size_t)argc * (sizeof(*a->argv) + sizeof(*a->lens))
                + bytes);
    a->n = m->n;
    a->argc = MERGE_HEAD;
    a->argv = (const char **)(a + 1);
    a->lens = (size_t *)(a->argv + argc);
    o = (char *)(a->lens + argc);
    for (size_t i = 0; i < m->n; i++)
        o = put(a, o, m->items[i].key, m->items[i].klen);
    o = put(a, o, sr->rank_key, sr->rank_klen);
    o = put(a, o, m->id_key, m->id_klen);
    for (int i = 0; i < MERGE_SHARED; i++)
        o = put(a, o, num[i], nlen[i]);
    for (size_t i = 0; i < m->n; i++) {
        const struct store_merge_item *it = &m->items[i];
        size_t len = score_encode(&it->delta, wire[0], sizeof(wire[0]));
        const char *w = wire[0], *end = wire[0] + len;

        /* the wire form's fields are separated by one blank each */
        for (int f = 0; f < SCORE_WIRE_FIELDS; f++) {
            const char *sp = memchr(w, ' ', (size_t)(end - w));
            size_t flen = sp ? (size_t)(sp - w) : (size_t)(end - w);

            o = put(a, o, w, flen);
            w += flen + (sp != NULL);
        }
        o = put(a, o, wire[1], it->floor ? score_encode(it->floor, wire[1],
                                                        sizeof(wire[1])) : 0);
    }
    return a;
}

int sr_merge_send(struct store_redis *sr, struct rcmd *c, int use_eval)
{
    struct merge_args *a = c->args;
    char nkeys[UTIL_FMT_U_MAX];

    a->argv[0] = use_eval ? "EVAL" : "EVALSHA";
    a->argv[1] = use_eval ? sr_merge_lua : sr->merge_sha;
    a->lens[2] = util_fmt_u(nkeys, a->n + 2);
    a->argv[2] = nkeys;                 /* hiredis copies the words at once */
    for (int i = 0; i < 2; i++)
        a->lens[i] = strlen(a->argv[i]);
    return sr_cmd_send(sr, c, a->argc, a->argv, a->lens);
}

/* sr_merge_reply - 1 when r was the script's answer (and c is answered). */
int sr_merge_reply(struct rcmd *c, const redisReply *r)
{
    const struct merge_args *a = c->args;
    struct store_item items[STORE_MERGE_MAX];

    if (r->type != REDIS_REPLY_ARRAY || r->elements != a->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_NIL)
            return 0;
        items[i].name = a->argv[MERGE_HEAD + i];
        items[i].nlen = a->lens[MERGE_HEAD + i];
        items[i].val = e->type == REDIS_REPLY_STRING ? e->str : NULL;
        items[i].vlen = e->type == REDIS_REPLY_STRING ? e->len : 0;
        items[i].age_ms = -1;
    }
    sr_cmd_answered(c);
    c->list_cb(c->arg, STORE_OK, items, a->n);
    return 1;
}

void sr_merge(struct store *s, const struct store_merge *m, store_list_cb *cb,
              void *arg)
{
    struct store_redis *sr = (struct store_redis *)s;
    int usable = m->n >= 1 && m->n <= STORE_MERGE_MAX && sr_usable(sr, m->id_klen);

    for (size_t i = 0; usable && i < m->n; i++)
        usable = sr_usable(sr, m->items[i].klen);
    if (!usable) {
        cb(arg, STORE_ERR, NULL, 0);
        return;
    }
    struct rcmd *c = sr_cmd_new(sr, K_MERGE, NULL, 0);
    c->list_cb = cb;
    c->arg = arg;
    c->args = merge_args(sr, m);
    if (sr_merge_send(sr, c, 0) < 0) {
        sr_cmd_fail(c);
        sr_cmd_release(c);
    }
}
