/*
 * siege_est - the response to sieges: which networks are established,
 * earned over retry_min and lost by guessing (see siege_store.h; the
 * state machine is siege.c)
 *
 * SYNOPSIS
 *	#include "siege_store.h"
 *
 *	void siege_check(ss, domain, hc, sc, cb, arg)
 *	enum siege_response siege_response(sc)
 *	void siege_admit(sc, cb, arg)
 *	void siege_delivered(sc, hc)
 *	void siege_invalid(sc, hc)
 *	int siege_suspect(sc, hc, cb, arg)
 *	void siege_established(ss, hc, sc, cb, arg)
 *	void siege_established_text(sc, json, out)
 *
 *	#include "siege_store_priv.h"
 *
 *	struct sdom *ss_dom_of(sc)
 *	void ss_settled(owner, net, tag, s, from_store)
 *
 * DESCRIPTION
 *	The request path: siege_check asks whether a client is established
 *	(outside a siege this process's table only; under one, with Redis,
 *	"s:" NET too), siege_response answers it, and siege_admit counts a
 *	deferred client's tries ("w:" NET) and admits one that came back
 *	between retry_min and retry_max.  Established networks:
 *	siege_delivered counts a network's visits ("p:" NET) until they
 *	establish it ("s:" NET); siege_invalid revokes one that guesses, at
 *	once or, with Redis, once its suspicion settles (ss_settled is the
 *	settle's judge; siege_suspect makes a request wait for the verdict).
 *	The operator: siege_established and siege_established_text, for
 *	`policyctl client`.
 *
 *	The domains, their counts and the store's lifetime are
 *	siege_store.c's (siege_unknown counts there); what the two files
 *	share is siege_store_priv.h.
 *
 * LIMITS
 *	This process knows at most SIEGE_NETS_MAX networks, counts at most
 *	SIEGE_COUNTED_MAX in their visit interval, and (with Redis) holds at
 *	most SIEGE_SUSPECTS_MAX suspects (see siege_store.h, LIMITS and
 *	Revoked).
 */

#include "siege_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"
#include "settle.h"
#include "siege.h"
#include "siege_store_priv.h"
#include "util.h"

/* ---- the request path ---- */

/* known_here - net's standing as established in this process's table:
 * 1 and *known when it has one (KNOWN_NO: revoked here lately), else 0 */
static int known_here(struct siege_store *ss, const char *net, int *known)
{
    int64_t v;
    uint64_t exp;

    *known = KNOWN_NO;
    if (!cache_get(ss->nets, net, strlen(net), util_now_ms(), &v, &exp))
        return 0;
    *known = (int)v;
    return 1;
}

/* remember - in this process's table: with Redis, trusted here only
 * SIEGE_REFRESH_MS; the store keeps it */
static void remember(struct siege_store *ss, const char *net, int known, uint64_t life_ms)
{
    if (ss->shared && life_ms > SIEGE_REFRESH_MS)
        life_ms = SIEGE_REFRESH_MS;
    cache_put(ss->nets, net, strlen(net), known, util_now_ms() + life_ms);
}

static void got_established(void *arg, int status, const char *val, size_t len)
{
    struct siege_client *sc = arg;
    struct siege_store *ss = sc->ss;

    if (status == STORE_OK && len == 1 && (val[0] == 'c' || val[0] == 'r')) {
        sc->known = val[0] == 'c' ? KNOWN_CLEAN : KNOWN_RETRIED;
        remember(ss, sc->net, sc->known, SIEGE_REFRESH_MS);
    } else if (status == STORE_ERR) {
        /* fail open, like the rest of policyd without Redis: an MTA is
         * not deferred for our outage (the harvest rules still hold);
         * not remembered, so the store is asked again next time */
        sc->known = KNOWN_ASSUMED;
        log_warn_rl(&ss->store_rl, "siege: the store did not answer for net=%s: "
                    "taken as established", sc->net);
    }
    sc->cb(sc->arg);
}

/* read_established - sc->net's standing as established: here, else (with
 * Redis) in the store.  cb once. */
static void read_established(struct siege_client *sc)
{
    struct siege_store *ss = sc->ss;
    char key[SIEGE_KEY_MAX];
    size_t klen;

    if (known_here(ss, sc->net, &sc->known) || !ss->shared) {
        sc->cb(sc->arg);
        return;
    }
    klen = ss_key_of(ss, key, "s:", sc->net, "");
    ss->store->ops->get(ss->store, key, klen, got_established, sc);
}

static void client_init(struct siege_store *ss, const struct harvest_client *hc,
                        struct siege_client *sc, siege_cb *cb, void *arg)
{
    sc->ss = ss;
    sc->dom = -1;
    sc->gen = ss->gen;
    sc->siege = 0;
    sc->admitted = 0;
    sc->pending_ms = -1;
    sc->pending_visits = 0;
    sc->cb = cb;
    sc->arg = arg;
    sc->known = hc->trusted || !hc->nlevels ? KNOWN_EXEMPT : KNOWN_NO;
    sc->net[0] = '\0';
    if (!hc->trusted && hc->nlevels)
        memcpy(sc->net, hc->lv[SCORE_NARROW].net, EVIDENCE_NET_MAX);
}

void siege_check(struct siege_store *ss, const char *domain,
                 const struct harvest_client *hc, struct siege_client *sc,
                 siege_cb *cb, void *arg)
{
    struct sdom *d = ss_dom_find(ss, domain);

    client_init(ss, hc, sc, cb, arg);
    if (d)
        sc->dom = (int)(d - ss->doms);
    sc->siege = d && d->st.m.on && ss->action != SIEGE_ACT_OFF;
    if (!sc->siege || sc->known) {
        /* outside a siege nothing is read */
        if (!sc->known)
            known_here(ss, sc->net, &sc->known);
        cb(arg);
        return;
    }
    read_established(sc);
}

enum siege_response siege_response(const struct siege_client *sc)
{
    if (!sc->siege || sc->known || sc->admitted)
        return SIEGE_NONE;
    return sc->ss->action == SIEGE_ACT_TARPIT ? SIEGE_TARPIT : SIEGE_DEFER;
}

/* tag_of - the client's domain and the table it indexes, in one word
 * (kept with a suspicion, whose verdict may come after a reload) */
static uint64_t tag_of(const struct siege_client *sc)
{
    return (uint64_t)sc->gen << 32 | (uint32_t)sc->dom;
}

/* dom_of_tag - the domain of a tag, unless a reload changed the table
 * (no domain: dom -1, beyond every table) */
static struct sdom *dom_of_tag(const struct siege_store *ss, uint64_t tag)
{
    uint32_t dom = (uint32_t)tag;

    return (unsigned)(tag >> 32) == ss->gen && dom < ss->ndoms ? &ss->doms[dom] : NULL;
}

/* ss_dom_of - the client's domain, unless a reload changed the table since */
struct sdom *ss_dom_of(const struct siege_client *sc)
{
    return dom_of_tag(sc->ss, tag_of(sc));
}

/* age_of - of a key made to live life_ms, from its remaining life ttl_ms
 * (-1: none); 0 when that does not tell */
static uint64_t age_of(uint64_t life_ms, long long ttl_ms)
{
    return ttl_ms >= 0 && (uint64_t)ttl_ms < life_ms ? life_ms - (uint64_t)ttl_ms : 0;
}

static void retried(void *arg, int status, long long count, long long ttl_ms)
{
    struct siege_client *sc = arg;
    struct siege_store *ss = sc->ss;
    struct sdom *d = ss_dom_of(sc);
    uint64_t age = age_of(ss->retry_max_ms, ttl_ms);

    /* a real MTA comes back after minutes; a bot at once, or never */
    if (status == STORE_OK && count > 1 && age >= ss->retry_min_ms) {
        char key[SIEGE_KEY_MAX];
        size_t klen = ss_key_of(ss, key, "s:", sc->net, "");

        sc->admitted = 1;
        if (d)
            d->admitted++;
        remember(ss, sc->net, KNOWN_RETRIED, ss->retry_max_ms);
        ss->store->ops->set(ss->store, key, klen, "r", 1, ss->retry_max_ms);
        log_info("siege: event=admit domain=%s net=%s waited=%.0fs",
                 d ? d->name : "-", sc->net, age / 1000.0);
    } else if (status == STORE_OK && count == 1 && d) {
        d->deferred++;
    }
    sc->cb(sc->arg);
}

void siege_admit(struct siege_client *sc, siege_cb *cb, void *arg)
{
    struct siege_store *ss = sc->ss;
    char key[SIEGE_KEY_MAX];
    size_t klen = ss_key_of(ss, key, "w:", sc->net, "");

    sc->cb = cb;
    sc->arg = arg;
    ss->store->ops->incr(ss->store, key, klen, 1, ss->retry_max_ms, 0, 0, retried, sc);
}

/* ---- established networks: earned over retry_min, lost by guessing ---- */

/* with_this - hc's narrow standing before this request, and this
 * recipient (valid or not; a trap counts as an invalid one) */
static struct score with_this(const struct harvest_client *hc, int valid)
{
    struct score s = hc->lv[SCORE_NARROW].before;

    if (valid)
        s.valid += 1;
    else
        s.invalid += 1;
    return s;
}

/* share_of - of invalid recipients, 0..1; s has one at least */
static double share_of(const struct score *s)
{
    return s->invalid / (s->invalid + s->valid);
}

struct pend_op {
    struct siege_store *ss;
    int clean;                      /* the share, at the request */
    char net[EVIDENCE_NET_MAX];
};

/* pended - "p:" NET was counted: its count is the network's visits
 * since its first, and its remaining life tells when that was, on
 * whichever policyd.  Established once they span retry_min: a burst,
 * however clean, is not an MTA. */
static void pended(void *arg, int status, long long count, long long ttl_ms)
{
    struct pend_op *op = arg;
    struct siege_store *ss = op->ss;
    uint64_t age = age_of(ss->retry_max_ms, ttl_ms);

    if (status == STORE_OK && !ss->closing && op->clean &&
        count >= (long long)ss->established_after && age >= ss->retry_min_ms) {
        char key[SIEGE_KEY_MAX];
        size_t klen = ss_key_of(ss, key, "s:", op->net, "");

        remember(ss, op->net, KNOWN_CLEAN, ss->established_ms);
        ss->store->ops->set(ss->store, key, klen, "c", 1, ss->established_ms);
    } else if (status == STORE_OK && !ss->closing && op->clean &&
               count + 1 >= (long long)ss->established_after && age < ss->retry_min_ms) {
        /* one more visit establishes it once retry_min has passed: this
         * visit ends then, so it is established at retry_min, not up to
         * visit_ms later */
        uint64_t now = util_now_ms(), ripe = now + (ss->retry_min_ms - age), exp;
        size_t nlen = strlen(op->net);
        int64_t v;

        if (cache_get(ss->counted, op->net, nlen, now, &v, &exp) && ripe < exp)
            cache_put(ss->counted, op->net, nlen, v, ripe);
    }
    free(op);
    ss_unref(ss);
}

void siege_delivered(struct siege_client *sc, const struct harvest_client *hc)
{
    struct siege_store *ss = sc->ss;
    struct pend_op *op;
    struct score s;
    char key[SIEGE_KEY_MAX];
    size_t klen, nlen = strlen(sc->net);
    uint64_t now, exp;
    int64_t v;

    /* established: siege_check found it here (written less than
     * SIEGE_REFRESH_MS ago) or in the store */
    if (hc->exempt || ss->closing || sc->known == KNOWN_CLEAN)
        return;
    /* a visit counts once: its other recipients cost this lookup alone */
    now = util_now_ms();
    if (ss->visit_ms && cache_get(ss->counted, sc->net, nlen, now, &v, &exp))
        return;
    if (ss->visit_ms)
        cache_put(ss->counted, sc->net, nlen, 1, now + ss->visit_ms);
    s = with_this(hc, 1);
    op = xmalloc(sizeof(*op));
    op->ss = ss;
    op->clean = share_of(&s) * 100 < ss->tarpit_share;
    memcpy(op->net, sc->net, sizeof(op->net));
    ss->refs++;
    /* a new key lives retry_max: the sender comes back within it, or
     * starts over (and a /48 of /64s leaves nothing for weeks) */
    klen = ss_key_of(ss, key, "p:", sc->net, "");
    ss->store->ops->incr(ss->store, key, klen, 1, ss->retry_max_ms, 0, 0, pended, op);
}

struct revoke_op {
    struct siege_store *ss;
    int was;                        /* known here as established */
    struct score s;                 /* the standing that revoked it */
    char net[EVIDENCE_NET_MAX];
    char domain[sizeof(((struct sdom *)0)->name)];
};

/* revoked - "s:" NET is gone: logged when it was established (here, or
 * in the store), not for every bot that never was */
static void revoked(void *arg, int status, long long count, long long ttl_ms)
{
    struct revoke_op *op = arg;
    (void)ttl_ms;

    if (op->was || (status == STORE_OK && count > 0))
        log_info("siege: event=revoke domain=%s net=%s invalid=%.0f valid=%.0f share=%.2f",
                 op->domain, op->net, op->s.invalid, op->s.valid, share_of(&op->s));
    ss_unref(op->ss);
    free(op);
}

static void forgotten(void *arg, int status, long long count, long long ttl_ms)
{
    (void)arg, (void)status, (void)count, (void)ttl_ms;
}

/* guessing - s, a narrow standing with an unknown recipient, is a
 * harvest's: enough invalid recipients (whole, as score.c counts: a typo
 * is not a harvest) at a share of tarpit_share or more */
static int guessing(const struct siege_store *ss, const struct score *s)
{
    return s->invalid + 0.5 >= SIEGE_REVOKE_MIN_INVALID && share_of(s) * 100 >= ss->tarpit_share;
}

/* revoke - net is not established, fleet-wide, whichever policyd
 * established it, and earns it anew over retry_min (its next visit
 * counts); was: known as established by the caller.  s revoked it. */
static void revoke(struct siege_store *ss, const char *net, const struct sdom *d,
                   const struct score *s, int was)
{
    struct revoke_op *op = xmalloc(sizeof(*op));
    char key[SIEGE_KEY_MAX];

    op->ss = ss;
    op->was = was;
    op->s = *s;
    snprintf(op->net, sizeof(op->net), "%s", net);
    snprintf(op->domain, sizeof(op->domain), "%s", d ? d->name : "-");
    remember(ss, net, KNOWN_NO, SIEGE_REFRESH_MS);
    cache_del(ss->counted, net, strlen(net));
    ss->refs++;
    ss->store->ops->del(ss->store, key, ss_key_of(ss, key, "s:", net, ""), revoked, op);
    ss->store->ops->del(ss->store, key, ss_key_of(ss, key, "p:", net, ""), forgotten, NULL);
}

static int was_established(int known)
{
    return known == KNOWN_CLEAN || known == KNOWN_RETRIED;
}

/* suspect - net's verdict waits for the fleet (settle.h); a full table
 * judges at once, on s */
static void suspect(struct siege_store *ss, const char *net, uint64_t tag,
                    const struct score *s)
{
    if (settle_add(ss->settle, net, tag) < 0)
        revoke(ss, net, dom_of_tag(ss, tag), s, 1);
}

/* ss_settled - the verdict on a suspected network (settle.h): its standing
 * once every policyd has merged what it had seen.  tag: the suspicion's
 * domain and the table it indexes. */
void ss_settled(void *owner, const char *net, uint64_t tag, const struct score *s,
                int from_store)
{
    struct siege_store *ss = owner;
    int here;
    (void)from_store;

    if (ss->closing)
        return;
    if (!guessing(ss, s)) {
        ss->cleared++;              /* the fleet had more valid recipients */
        return;
    }
    if (known_here(ss, net, &here) && here == KNOWN_NO)
        return;                     /* revoked here meanwhile */
    revoke(ss, net, dom_of_tag(ss, tag), s, was_established(here));
}

struct probe_op {
    struct siege_store *ss;
    uint64_t tag;
    struct score s;
    char net[EVIDENCE_NET_MAX];
};

/* probed - is a guessing network, not known here, established?  Then a
 * suspect; else nothing is lost by revoking at once (its visits start
 * over).  A store that did not answer: a suspect (the verdict reads it
 * again). */
static void probed(void *arg, int status, const char *val, size_t len)
{
    struct probe_op *op = arg;
    struct siege_store *ss = op->ss;
    int here;

    if (!ss->closing && !(known_here(ss, op->net, &here) && here == KNOWN_NO)) {
        if (status == STORE_ERR || (status == STORE_OK && len == 1 &&
                                    (val[0] == 'c' || val[0] == 'r')))
            suspect(ss, op->net, op->tag, &op->s);
        else
            revoke(ss, op->net, dom_of_tag(ss, op->tag), &op->s, 0);
    }
    ss_unref(ss);
    free(op);
}

void siege_invalid(struct siege_client *sc, const struct harvest_client *hc)
{
    struct siege_store *ss = sc->ss;
    struct probe_op *op;
    struct score s;
    int here;
    char key[SIEGE_KEY_MAX];

    if (sc->known == KNOWN_EXEMPT || ss->closing)
        return;
    s = with_this(hc, 0);
    if (!guessing(ss, &s))
        return;
    if (known_here(ss, sc->net, &here) && here == KNOWN_NO)
        return;                     /* revoked here less than SIEGE_REFRESH_MS ago */
    if (!ss->settle || (sc->siege && sc->known == KNOWN_NO)) {
        /* alone, no other policyd holds anything back; or a siege's read
         * just found it not established */
        sc->known = KNOWN_NO;
        revoke(ss, sc->net, ss_dom_of(sc), &s, was_established(here));
        return;
    }
    /* other policyd may hold valid recipients of it that the store has
     * not had yet: an established network's verdict waits for them */
    if (was_established(here) || was_established(sc->known) || sc->known == KNOWN_ASSUMED) {
        suspect(ss, sc->net, tag_of(sc), &s);
        return;
    }
    op = xmalloc(sizeof(*op));
    op->ss = ss;
    op->tag = tag_of(sc);
    op->s = s;
    memcpy(op->net, sc->net, sizeof(op->net));
    ss->refs++;
    ss->store->ops->get(ss->store, key, ss_key_of(ss, key, "s:", sc->net, ""), probed, op);
}

/* suspicion_over - the verdict: the siege's answer if it revoked */
static void suspicion_over(void *arg)
{
    struct siege_client *sc = arg;
    int here;

    if (known_here(sc->ss, sc->net, &here) && here == KNOWN_NO)
        sc->known = KNOWN_NO;
    sc->cb(sc->arg);
}

int siege_suspect(struct siege_client *sc, const struct harvest_client *hc,
                  siege_cb *cb, void *arg)
{
    struct siege_store *ss = sc->ss;

    if (!ss->settle || ss->closing || !sc->siege ||
        !(was_established(sc->known) || sc->known == KNOWN_ASSUMED))
        return 0;
    sc->wait.cb = suspicion_over;
    sc->wait.arg = sc;
    sc->cb = cb;
    sc->arg = arg;
    if (settle_wait(ss->settle, sc->net, &sc->wait))
        return 1;
    if (!guessing(ss, &hc->lv[SCORE_NARROW].before))
        return 0;
    suspect(ss, sc->net, tag_of(sc), &hc->lv[SCORE_NARROW].before);
    if (settle_wait(ss->settle, sc->net, &sc->wait))
        return 1;
    sc->known = KNOWN_NO;           /* the table was full: revoked at once */
    return 0;
}

/* ---- the operator: is a network established? ---- */

struct est_op {
    struct siege_client *sc;
    siege_cb *cb;
    void *arg;
};

static void est_done(struct est_op *op)
{
    op->cb(op->arg);
    free(op);
}

static void est_pending(void *arg, int status, long long count, long long ttl_ms)
{
    struct est_op *op = arg;

    if (status == STORE_OK) {
        op->sc->pending_ms = (long long)age_of(op->sc->ss->retry_max_ms, ttl_ms);
        op->sc->pending_visits = count;
    }
    est_done(op);
}

/* est_read - not established: is it on its way? */
static void est_read(void *arg)
{
    struct est_op *op = arg;
    struct siege_client *sc = op->sc;
    struct siege_store *ss = sc->ss;
    char key[SIEGE_KEY_MAX];

    if (sc->known) {
        est_done(op);
        return;
    }
    ss->store->ops->peek(ss->store, key, ss_key_of(ss, key, "p:", sc->net, ""), 1,
                         est_pending, op);
}

void siege_established(struct siege_store *ss, const struct harvest_client *hc,
                       struct siege_client *sc, siege_cb *cb, void *arg)
{
    struct est_op *op = xmalloc(sizeof(*op));

    op->sc = sc;
    op->cb = cb;
    op->arg = arg;
    client_init(ss, hc, sc, est_read, op);
    if (sc->known)
        est_done(op);
    else
        read_established(sc);
}

void siege_established_text(const struct siege_client *sc, int json, struct sbuf *out)
{
    static const char *const text[] = { "no", "yes (clean record)",
        "yes (retried during a siege)", "yes (whitelisted or exempt)",
        "not known (the store did not answer: a siege spares it)" };
    static const char *const word[] = { "no", "clean", "retried", "exempt", "assumed" };
    const struct siege_store *ss = sc->ss;

    if (json) {
        sbuf_printf(out, "\"established\":\"%s\"", word[sc->known]);
        if (sc->pending_ms >= 0)
            sbuf_printf(out, ",\"pending_s\":%.1f,\"pending_visits\":%lld",
                        sc->pending_ms / 1000.0, sc->pending_visits);
        return;
    }
    sbuf_printf(out, "established: %s", text[sc->known]);
    /* a visit: its valid recipients, counted once per visit_ms here */
    if (sc->pending_ms >= 0)
        sbuf_printf(out, " (pending since %.0fs, visits %lld of %u, spanning %.0fs "
                    "within %.0fs, one counted per %.*fs, under %u%% invalid)",
                    sc->pending_ms / 1000.0, sc->pending_visits, ss->established_after,
                    ss->retry_min_ms / 1000.0, ss->retry_max_ms / 1000.0,
                    ss->visit_ms < 10000 ? 1 : 0, ss->visit_ms / 1000.0, ss->tarpit_share);
}
