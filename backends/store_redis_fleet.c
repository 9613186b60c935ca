/*
 * store_redis_fleet - the roster and offenders ops of store_redis
 *
 * SYNOPSIS
 *	#include "store_redis_priv.h"
 *
 *	void sr_roster_put(s, key, klen, member, mlen, val, vlen, keep_ms)
 *	void sr_roster_get(s, key, klen, cb, arg)
 *	void sr_ranked(s, n, cb, arg)
 *
 * DESCRIPTION
 *	A roster is a hash KEY (member -> record) beside a sorted set
 *	KEY ":t" (member -> when it last wrote, in ms of Redis's own TIME,
 *	so members on hosts with skewed clocks are aged alike).  roster_put
 *	writes both, drops members silent for keep_ms and the oldest beyond
 *	STORE_ROSTER_MAX, and keeps both keys keep_ms.  roster_get answers
 *	each member with its age, newest first.
 *
 *	ranked reads the offenders index that the merge script keeps
 *	(store_redis_merge.c), highest first, and GETs each standing; an
 *	entry whose standing expired (or was unblocked), or whose key is not
 *	a string (a corrupted index), is removed from the
 *	index on the way and the next one taken, so n live standings come
 *	back when the index has them.
 *
 *	Each op is one EVAL, so one round trip.  They are called about once
 *	a second per process, or by an operator: no script is loaded at the
 *	handshake for them (Redis keeps the compiled body in its own cache).
 *	The scripts write after TIME, which Redis allows since scripts are
 *	replicated by their effects (Redis 5 and later, Debian 12 has 7).
 *
 * LIMITS
 *	ranked GETs standing keys that are not in KEYS: fine on one server
 *	or a Sentinel set, not on Redis Cluster (policyd does not speak
 *	Cluster).  A list answer holds at most STORE_RANK_MAX entries;
 *	anything not of the expected shape answers STORE_ERR.
 */

#include "store_redis_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../policyd/util.h"

static const char roster_put_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "local keep = tonumber(ARGV[3])\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('ZADD', KEYS[2], now, ARGV[1])\n"
    "local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - keep)\n"
    "local over = redis.call('ZCARD', KEYS[2]) - #old - tonumber(ARGV[4])\n"
    "if over > 0 then\n"
    "  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], #old, #old + over - 1)) do\n"
    "    old[#old + 1] = m\n"
    "  end\n"
    "end\n"
    "for _, m in ipairs(old) do\n"
    "  redis.call('HDEL', KEYS[1], m)\n"
    "  redis.call('ZREM', KEYS[2], m)\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], keep)\n"
    "redis.call('PEXPIRE', KEYS[2], keep)\n"
    "return #old\n";

static const char roster_get_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "local ms = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')\n"
    "local out = {}\n"
    "for i = 1, #ms, 2 do\n"
    "  local v = redis.call('HGET', KEYS[1], ms[i])\n"
    "  if v then\n"
    "    out[#out + 1] = ms[i]\n"
    "    out[#out + 1] = math.max(now - tonumber(ms[i + 1]), 0)\n"
    "    out[#out + 1] = v\n"
    "  end\n"
    "end\n"
    "return out\n";

static const char ranked_lua[] =
    "local n = tonumber(ARGV[1])\n"
    "local out, gone, i = {}, {}, 0\n"
    "while #out < 3 * n do\n"
    "  local ms = redis.call('ZREVRANGE', KEYS[1], i, i + n - 1)\n"
    "  if #ms == 0 then break end\n"
    "  for _, m in ipairs(ms) do\n"
    "    local v = redis.pcall('GET', m)\n"
    "    if type(v) ~= 'string' then gone[#gone + 1] = m\n"
    "    elseif #out < 3 * n then\n"
    "      out[#out + 1] = m\n"
    "      out[#out + 1] = -1\n"
    "      out[#out + 1] = v\n"
    "    end\n"
    "  end\n"
    "  i = i + n\n"
    "end\n"
    "for _, m in ipairs(gone) do redis.call('ZREM', KEYS[1], m) end\n"
    "return out\n";

#define ROSTER_KEY_MAX (SR_MAX_KEY + 3)

/* eval_send - EVAL body with nkeys keys then the arguments; 0 when sent. */
static int eval_send(struct store_redis *sr, struct rcmd *c, const char *body,
                     int argc, const char **args, const size_t *alens, int nkeys)
{
    const char *argv[3 + 8];
    size_t lens[3 + 8];
    char nk[4];

    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVAL";
    argv[1] = body;
    argv[2] = nk;
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    for (int i = 0; i < argc; i++) {
        argv[3 + i] = args[i];
        lens[3 + i] = alens[i];
    }
    return sr_cmd_send(sr, c, 3 + argc, argv, lens);
}

/* times_key - KEY ":t" into buf (ROSTER_KEY_MAX); its length. */
static size_t times_key(const char *key, size_t klen, char *buf)
{
    memcpy(buf, key, klen);
    memcpy(buf + klen, ":t", 2);
    return klen + 2;
}

void sr_roster_put(struct store *s, const char *key, size_t klen,
                   const char *member, size_t mlen, const char *val,
                   size_t vlen, uint64_t keep_ms)
{
    struct store_redis *sr = (struct store_redis *)s;
    char tkey[ROSTER_KEY_MAX], keep[24], max[24];
    const char *args[6] = { key, tkey, member, val, keep, max };
    size_t lens[6] = { klen, 0, mlen, vlen, 0, 0 };

    if (!sr_usable(sr, klen))
        return;
    lens[1] = times_key(key, klen, tkey);
    lens[4] = (size_t)snprintf(keep, sizeof(keep), "%llu", (unsigned long long)keep_ms);
    lens[5] = (size_t)snprintf(max, sizeof(max), "%d", STORE_ROSTER_MAX);
    struct rcmd *c = sr_cmd_new(sr, K_ROSTER, NULL, 0);
    if (eval_send(sr, c, roster_put_lua, 6, args, lens, 2) < 0) {
        sr_cmd_fail(c);
        sr_cmd_release(c);
    }
}

/* list_start - a K_LIST command, or NULL after answering STORE_ERR. */
static struct rcmd *list_start(struct store_redis *sr, size_t klen,
                               store_list_cb *cb, void *arg)
{
    struct rcmd *c;

    if (!sr_usable(sr, klen)) {
        cb(arg, STORE_ERR, NULL, 0);
        return NULL;
    }
    c = sr_cmd_new(sr, K_LIST, NULL, 0);
    c->list_cb = cb;
    c->arg = arg;
    return c;
}

static void list_sent(struct rcmd *c, int rc)
{
    if (rc < 0) {
        sr_cmd_fail(c);
        sr_cmd_release(c);
    }
}

void sr_roster_get(struct store *s, const char *key, size_t klen,
                   store_list_cb *cb, void *arg)
{
    struct store_redis *sr = (struct store_redis *)s;
    char tkey[ROSTER_KEY_MAX], max[24];
    const char *args[3] = { key, tkey, max };
    size_t lens[3] = { klen, 0, 0 };
    struct rcmd *c = list_start(sr, klen, cb, arg);

    if (!c)
        return;
    lens[1] = times_key(key, klen, tkey);
    lens[2] = (size_t)snprintf(max, sizeof(max), "%d", STORE_ROSTER_MAX);
    list_sent(c, eval_send(sr, c, roster_get_lua, 3, args, lens, 2));
}

void sr_ranked(struct store *s, unsigned n, store_list_cb *cb, void *arg)
{
    struct store_redis *sr = (struct store_redis *)s;
    char num[24];
    const char *args[2] = { sr->rank_key, num };
    size_t lens[2] = { sr->rank_klen, 0 };
    struct rcmd *c = list_start(sr, sr->rank_klen, cb, arg);

    if (!c)
        return;
    if (n == 0 || n > STORE_RANK_MAX)
        n = STORE_RANK_MAX;
    lens[1] = (size_t)snprintf(num, sizeof(num), "%u", n);
    list_sent(c, eval_send(sr, c, ranked_lua, 2, args, lens, 1));
}

/* sr_list_reply - 1 when r was a list of (name, integer, value) triples
 * and c is answered. */
int sr_list_reply(struct rcmd *c, const redisReply *r)
{
    struct store_item *items;
    size_t n;

    if (r->type != REDIS_REPLY_ARRAY || r->elements % 3 != 0
        || r->elements / 3 > STORE_RANK_MAX)
        return 0;
    n = r->elements / 3;
    for (size_t i = 0; i < n; i++)
        if (r->element[3 * i]->type != REDIS_REPLY_STRING
            || r->element[3 * i + 1]->type != REDIS_REPLY_INTEGER
            || r->element[3 * i + 2]->type != REDIS_REPLY_STRING)
            return 0;
    items = xcalloc(n ? n : 1, sizeof(*items));
    for (size_t i = 0; i < n; i++) {
        items[i].name = r->element[3 * i]->str;
        items[i].nlen = r->element[3 * i]->len;
        items[i].age_ms = r->element[3 * i + 1]->integer;
        items[i].val = r->element[3 * i + 2]->str;
        items[i].vlen = r->element[3 * i + 2]->len;
    }
    sr_cmd_answered(c);
    c->list_cb(c->arg, STORE_OK, items, n);
    free(items);
    return 1;
}
