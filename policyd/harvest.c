/*
 * harvest - the directory-harvest defence (see harvest.h)
 */

#include "harvest.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

#define HARVEST_TOP 10          /* offenders shown in stats */

struct harvest {
    const struct config *cfg;
    struct evidence *ev;
    struct cidr *whitelist;
    size_t nwhitelist;
    struct score_rules rules[SCORE_LEVELS];
    struct stats_net top[HARVEST_TOP];
    char top_names[HARVEST_TOP][EVIDENCE_NET_MAX];
};

static const char *const level_names[SCORE_LEVELS] = { "narrow", "wide" };

struct harvest *harvest_new(const struct config *cfg, struct evidence *ev)
{
    struct harvest *h = xcalloc(1, sizeof(*h));

    h->cfg = cfg;
    h->ev = ev;
    h->nwhitelist = cfg->harvest.whitelist.n;
    h->whitelist = xcalloc(h->nwhitelist, sizeof(*h->whitelist));
    for (size_t i = 0; i < h->nwhitelist; i++)
        if (addr_cidr_parse(cfg->harvest.whitelist.v[i], &h->whitelist[i]) != 0)
            log_warn("[harvest] whitelist: ignoring '%s'", cfg->harvest.whitelist.v[i]);
    score_rules_of(cfg, SCORE_NARROW, &h->rules[SCORE_NARROW]);
    score_rules_of(cfg, SCORE_WIDE, &h->rules[SCORE_WIDE]);
    return h;
}

void harvest_free(struct harvest *h)
{
    if (!h)
        return;
    free(h->whitelist);
    free(h);
}

/* nets_of - the networks of a client IP, narrow then wide; returns how
 * many levels apply (0: not an IP).  A wide prefix of 0, or one not wider
 * than the narrow one, means one level. */
static unsigned nets_of(const struct harvest *h, const char *ip,
                        char net[SCORE_LEVELS][EVIDENCE_NET_MAX],
                        int *family, uint8_t addr[16])
{
    const struct config *cfg = h->cfg;
    unsigned v4 = cfg->harvest.ipv4_wide_prefix, v6 = cfg->harvest.ipv6_wide_prefix;

    if (!ip || addr_parse_ip(ip, family, addr) != 0
        || addr_client_net(*family, addr, cfg->harvest.ipv4_prefix,
                           cfg->harvest.ipv6_prefix, net[SCORE_NARROW],
                           EVIDENCE_NET_MAX) != 0)
        return 0;
    if (*family == AF_INET ? (v4 == 0 || v4 >= cfg->harvest.ipv4_prefix)
                           : (v6 == 0 || v6 >= cfg->harvest.ipv6_prefix))
        return 1;
    if (addr_client_net(*family, addr, v4, v6, net[SCORE_WIDE], EVIDENCE_NET_MAX) != 0)
        return 1;
    return 2;
}

void harvest_classify(struct harvest *h, const struct proto_request *req,
                      struct harvest_client *out)
{
    char net[SCORE_LEVELS][EVIDENCE_NET_MAX];
    int family;
    uint8_t addr[16];

    out->h = h;
    out->exempt = 1;
    out->trusted = 0;
    out->nlevels = nets_of(h, req->client_address, net, &family, addr);
    if (!out->nlevels)
        return;                         /* nothing to count it under */
    for (unsigned l = 0; l < out->nlevels; l++)
        memcpy(out->lv[l].net, net[l], EVIDENCE_NET_MAX);
    if (h->cfg->harvest.exempt_sasl && req->sasl_username && *req->sasl_username)
        out->trusted = 1;
    for (size_t i = 0; i < h->nwhitelist && !out->trusted; i++)
        if (addr_cidr_match(&h->whitelist[i], family, addr))
            out->trusted = 1;
    /* [harvest] enabled = no is the whole defence's switch: siege mode
     * (which spares trusted clients) included; [siege] action = off turns
     * off siege mode alone */
    if (!h->cfg->harvest.enabled)
        out->trusted = 1;
    out->exempt = out->trusted;
}

/* log_event - one stage change of one network, key=value */
static void log_event(const struct harvest *h, const char *event, unsigned level,
                      const char *net, const struct score *s,
                      const struct score_verdict *v, const char *why)
{
    char extra[96] = "";

    if (v && v->stage == STAGE_TARPIT)
        snprintf(extra, sizeof(extra), " delay=%.3fs", v->delay_ms / 1000.0);
    else if (s->block_until_ms)
        snprintf(extra, sizeof(extra), " until=%llu",
                 (unsigned long long)(s->block_until_ms / 1000));
    log_info("harvest: event=%s level=%s net=%s invalid=%.0f valid=%.0f traps=%.0f "
             "share=%.2f%s why=\"%s\"%s", event, level_names[level], net,
             s->invalid, s->valid, s->traps,
             s->invalid + s->valid > 0 ? s->invalid / (s->invalid + s->valid) : 0.0,
             extra, why, h->cfg->harvest.dry_run ? " dry_run=yes" : "");
}

/* stage_seen - log a change of stage seen in a read, once. */
static void stage_seen(struct harvest *h, unsigned level, struct harvest_level *lv,
                       const struct score *s, const struct score_verdict *v)
{
    int was = evidence_note_stage_via(&lv->rd, (int)v->stage);

    if (was == (int)v->stage)
        return;
    if (v->stage == STAGE_TARPIT && was != STAGE_BLOCKED) {
        log_event(h, "tarpit", level, lv->net, s, v, score_why_name(v->why));
        if (h->cfg->harvest.dry_run)
            stats.would_delay_networks_total++;
    } else if (v->stage == STAGE_BLOCKED) {
        log_event(h, "block", level, lv->net, s, v, score_why_name(v->why));
    } else if (was == STAGE_BLOCKED) {
        log_event(h, "block_end", level, lv->net, s, v, score_why_name(v->why));
    }
}

/* earn_block - the standing s calls for a block: set it in delta (not in
 * a dry run), log and count it once. */
static void earn_block(struct harvest *h, unsigned level, struct harvest_level *lv,
                       struct score *s, enum score_why why, uint64_t now,
                       struct score *delta)
{
    const struct config *cfg = h->cfg;

    if (!cfg->harvest.dry_run) {
        delta->block_until_ms = now + cfg->harvest.block_time_ms;
        s->block_until_ms = delta->block_until_ms;
        stats.blocked_networks_total++;
    } else if (evidence_note_stage_via(&lv->rd, STAGE_BLOCKED) == STAGE_BLOCKED) {
        return;                 /* a dry run logs a would-be block once */
    } else {
        stats.would_block_networks_total++;
    }
    evidence_note_stage_via(&lv->rd, STAGE_BLOCKED);
    log_event(h, "block", level, lv->net, s, NULL, score_why_name(why));
}

/* level_judge - the stage lv->before earns now, and its logging.  Evidence
 * that earns a block but never had one (recorded by concurrent requests,
 * each judged on less) blocks now.  A block that ran out is not renewed by
 * the same evidence: only a new unknown recipient does (harvest_record), so
 * block_time means what it says. */
static void level_judge(struct harvest_client *c, unsigned level)
{
    struct harvest *h = c->h;
    struct harvest_level *lv = &c->lv[level];
    enum score_why why;
    int due = !lv->before.block_until_ms
              && score_block_due(&h->rules[level], &lv->before, c->now_ms, &why);

    if (due) {
        struct score delta = { 0, 0, 0, c->now_ms, 0 };
        earn_block(h, level, lv, &lv->before, why, c->now_ms, &delta);
        if (delta.block_until_ms)
            evidence_record_via(&lv->rd, &delta);
    }
    score_judge(&h->rules[level], &lv->before, c->now_ms, &lv->v);
    /* a dry run stores no block: a would-be block is a stage of its own,
     * so it is logged once, not on every request */
    if (due && h->cfg->harvest.dry_run)
        lv->v.stage = STAGE_BLOCKED;
    stage_seen(h, level, lv, &lv->before, &lv->v);
}

static void level_read(void *arg, const struct score *standing, int from_store)
{
    struct harvest_level *lv = arg;
    struct harvest_client *c = lv->owner;
    (void)from_store;

    lv->before = *standing;
    level_judge(c, (unsigned)(lv - c->lv));
    if (--c->outstanding == 0)
        c->cb(c->arg);
}

void harvest_refresh(struct harvest_client *c, int waited)
{
    struct score view;

    if (c->exempt)
        return;
    if (waited)
        c->now_ms = util_wall_ms();
    /* nothing recorded here since the reads (an answer from the L1 cache
     * comes in the same turn): nothing to add */
    if (evidence_recorded(c->h->ev) == c->recorded)
        return;
    for (unsigned l = 0; l < c->nlevels; l++) {
        struct harvest_level *lv = &c->lv[l];
        if (!evidence_view_via(&lv->rd, c->now_ms, &view))
            continue;
        score_max(&lv->before, &view, c->now_ms, c->h->rules[l].half_life_ms);
        level_judge(c, l);
    }
}

void harvest_state(struct harvest_client *c, harvest_cb *cb, void *arg)
{
    c->cb = cb;
    c->arg = arg;
    if (c->exempt) {
        cb(arg);
        return;
    }
    c->now_ms = util_wall_ms();
    c->recorded = evidence_recorded(c->h->ev);
    c->outstanding = c->nlevels;
    for (unsigned l = 0, n = c->nlevels; l < n; l++) {
        c->lv[l].owner = c;
        evidence_read_at(c->h->ev, c->lv[l].net, &c->lv[l].rd, c->now_ms, level_read,
                         &c->lv[l]);
    }
}

/* vouched - the client's own network has delivered to valid recipients
 * with a clean record (below the tarpit's share and count): the wide level
 * does not judge it, so neighbours that harvest (or pad their way to the
 * wide thresholds on purpose) cannot block an honest sender. */
static int vouched(const struct harvest_client *c)
{
    const struct harvest_level *n = &c->lv[SCORE_NARROW];

    return n->v.stage <= STAGE_WATCH && n->before.valid >= 1
           && n->v.share * 100.0 < (double)c->h->rules[SCORE_NARROW].tarpit_share;
}

void harvest_decide(const struct harvest_client *c, struct harvest_decision *d)
{
    d->blocked = 0;
    d->delay_ms = 0;
    if (c->exempt)
        return;
    for (unsigned l = 0; l < c->nlevels; l++) {
        if (l == SCORE_WIDE && vouched(c))
            continue;
        if (c->lv[l].v.stage == STAGE_BLOCKED)
            d->blocked = 1;
        if (c->lv[l].v.delay_ms > d->delay_ms)
            d->delay_ms = c->lv[l].v.delay_ms;
    }
}

void harvest_record(struct harvest_client *c, enum harvest_outcome o)
{
    struct harvest *h = c->h;
    uint64_t now = c->now_ms;           /* harvest_refresh's */

    if (c->exempt)
        return;
    if (o == OUTCOME_TRAP)
        stats.trap_hits_total++;
    for (unsigned l = 0; l < c->nlevels; l++) {
        struct harvest_level *lv = &c->lv[l];
        struct score delta = { 0, 0, 0, now, 0 }, after = lv->before;
        enum score_why why;

        if (o == OUTCOME_VALID)
            delta.valid = 1;
        else
            delta.invalid = 1;
        /* a trap blocks the client's own network at once; for the wide one
         * (a NAT, a hosting range) it is one more unknown recipient */
        if (o == OUTCOME_TRAP && l == SCORE_NARROW) {
            delta.traps = 1;
            log_event(h, "trap", l, lv->net, &after, NULL, "trap address asked");
        }
        score_add(&after, &delta, now, h->rules[l].half_life_ms);
        if (o != OUTCOME_VALID && score_block_due(&h->rules[l], &after, now, &why))
            earn_block(h, l, lv, &after, why, now, &delta);
        evidence_record_via(&lv->rd, &delta);
    }
}

/* trap_match - p ("local@domain" or "local@") against local part
 * full[0..llen) and the domain of a */
static int trap_match(const char *p, const struct address *a, size_t llen)
{
    size_t plen = strlen(p);

    /* traps are lowercased (config); the recipient keeps its case when
     * ignore_case = no, and a trap is a trap in any case */
    if (p[plen - 1] == '@')             /* "local@": in every domain of ours */
        return plen - 1 == llen && strncasecmp(p, a->full, llen) == 0;
    return plen > llen && strncasecmp(p, a->full, llen) == 0 && p[llen] == '@'
           && strcasecmp(p + llen + 1, a->domain) == 0;
}

/* harvest_is_trap - the address as asked, or without its extension: a
 * harvester cannot step round a trap by adding "+x" to it. */
int harvest_is_trap(const struct harvest *h, const struct address *a)
{
    const struct strlist *t = &h->cfg->harvest.traps;

    for (size_t i = 0; i < t->n; i++)
        if (trap_match(t->v[i], a, a->local_len)
            || (a->bare_len != a->local_len && trap_match(t->v[i], a, a->bare_len)))
            return 1;
    return 0;
}

/* ---- operator requests: one allocated context each (not the request path) */

struct op {
    struct harvest *h;
    int json;
    unsigned nlevels, outstanding;
    long long removed;
    int failed;
    char net[SCORE_LEVELS][EVIDENCE_NET_MAX];
    struct evidence_read rd[SCORE_LEVELS];
    struct score s[SCORE_LEVELS];
    int from_store[SCORE_LEVELS];
    struct op_level {
        struct op *op;
        unsigned level;
    } lv[SCORE_LEVELS];
    void (*cb)(void *arg, int ok, const char *text);
    void *arg;
};

static struct op *op_new(struct harvest *h, const char *ip,
                         void (*cb)(void *, int, const char *), void *arg)
{
    int family;
    uint8_t addr[16];
    struct op *op = xcalloc(1, sizeof(*op));

    op->nlevels = nets_of(h, ip, op->net, &family, addr);
    if (!op->nlevels) {
        free(op);
        cb(arg, 0, "error: not an IP address");
        return NULL;
    }
    op->h = h;
    op->cb = cb;
    op->arg = arg;
    op->outstanding = op->nlevels;
    for (unsigned l = 0; l < op->nlevels; l++) {
        op->lv[l].op = op;
        op->lv[l].level = l;
    }
    return op;
}

static void info_level(struct sbuf *b, const struct op *op, unsigned l, uint64_t now)
{
    const struct harvest *h = op->h;
    const struct score *s = &op->s[l];
    struct score_verdict v;
    double left;

    score_judge(&h->rules[l], s, now, &v);
    left = v.stage == STAGE_BLOCKED ? (double)(s->block_until_ms - now) / 1000.0 : 0;
    if (op->json) {
        sbuf_printf(b, "%s{\"level\":\"%s\",\"network\":\"%s\",\"invalid\":%.2f,"
                    "\"valid\":%.2f,\"share\":%.3f,\"traps\":%.2f,\"stage\":\"%s\","
                    "\"why\":\"%s\",\"delay_s\":%.3f,\"block_left_s\":%.1f,"
                    "\"scope\":\"%s\"}", l ? "," : "", level_names[l], op->net[l],
                    s->invalid, s->valid, v.share, s->traps,
                    score_stage_name(v.stage), score_why_name(v.why),
                    v.delay_ms / 1000.0, left,
                    op->from_store[l] ? "fleet" : "this process");
        return;
    }
    sbuf_printf(b, "%slevel: %s\nnetwork: %s\ninvalid: %.2f\nvalid: %.2f\n"
                "share: %.3f\ntraps: %.2f\nstage: %s\nwhy: %s\n", l ? "\n" : "",
                level_names[l], op->net[l], s->invalid, s->valid, v.share, s->traps,
                score_stage_name(v.stage), score_why_name(v.why));
    if (v.stage == STAGE_TARPIT)
        sbuf_printf(b, "delay_s: %.3f\n", v.delay_ms / 1000.0);
    if (v.stage == STAGE_BLOCKED)
        sbuf_printf(b, "block_left_s: %.1f\n", left);
    sbuf_printf(b, "scope: %s\n", op->from_store[l] ? "fleet (redis)" : "this process");
}

static void info_read(void *arg, const struct score *standing, int from_store)
{
    struct op_level *ol = arg;
    struct op *op = ol->op;
    uint64_t now = util_wall_ms();
    struct sbuf b;

    op->s[ol->level] = *standing;
    op->from_store[ol->level] = from_store;
    if (--op->outstanding > 0)
        return;
    sbuf_init(&b);
    if (op->json)
        sbuf_printf(&b, "{\"levels\":[");
    for (unsigned l = 0; l < op->nlevels; l++)
        info_level(&b, op, l, now);
    if (op->json)
        sbuf_printf(&b, "]}");
    else if (b.len && b.data[b.len - 1] == '\n')
        b.data[--b.len] = '\0';
    op->cb(op->arg, 1, b.data);
    sbuf_free(&b);
    free(op);
}

void harvest_client_info(struct harvest *h, const char *ip, int json,
                         void (*cb)(void *arg, int ok, const char *text), void *arg)
{
    struct op *op = op_new(h, ip, cb, arg);

    if (!op)
        return;
    op->json = json;
    for (unsigned l = 0, n = op->nlevels; l < n; l++)
        evidence_read(h->ev, op->net[l], &op->rd[l], info_read, &op->lv[l]);
}

static void unblock_done(void *arg, int status, long long count, long long ttl_ms)
{
    struct op_level *ol = arg;
    struct op *op = ol->op;
    char text[2 * EVIDENCE_NET_MAX + 96];
    (void)ttl_ms;

    if (status == STORE_ERR)
        op->failed = 1;
    else
        op->removed += count;
    if (--op->outstanding > 0)
        return;
    if (op->failed) {
        op->cb(op->arg, 0, "error: the counter store did not answer");
    } else {
        snprintf(text, sizeof(text), "%s%s%s: %s", op->net[0],
                 op->nlevels > 1 ? " and " : "", op->nlevels > 1 ? op->net[1] : "",
                 op->removed ? "standing and block removed" : "nothing to remove");
        log_info("unblock %s%s%s by operator", op->net[0],
                 op->nlevels > 1 ? " and " : "", op->nlevels > 1 ? op->net[1] : "");
        op->cb(op->arg, 1, text);
    }
    free(op);
}

void harvest_unblock(struct harvest *h, const char *ip,
                     void (*cb)(void *arg, int ok, const char *text), void *arg)
{
    struct op *op = op_new(h, ip, cb, arg);

    if (!op)
        return;
    for (unsigned l = 0, n = op->nlevels; l < n; l++)
        evidence_forget(h->ev, op->net[l], unblock_done, &op->lv[l]);
}

struct top_walk {
    struct harvest *h;
    unsigned n;
    uint64_t now, blocked;
};

static void top_add(void *arg, const char *net, const struct score *s)
{
    struct top_walk *w = arg;
    struct harvest *h = w->h;
    long long invalid = (long long)(s->invalid + 0.5);     /* as score.c counts */
    long long block_ms = 0;
    unsigned i;

    if (s->block_until_ms > w->now) {
        w->blocked++;
        block_ms = (long long)(s->block_until_ms - w->now);
    }
    if (invalid < 1 && !block_ms)
        return;
    /* insertion into a sorted array of at most HARVEST_TOP */
    for (i = w->n; i > 0 && h->top[i - 1].count < invalid; i--)
        if (i < HARVEST_TOP) {
            h->top[i] = h->top[i - 1];
            memcpy(h->top_names[i], h->top_names[i - 1], EVIDENCE_NET_MAX);
        }
    if (i >= HARVEST_TOP)
        return;
    snprintf(h->top_names[i], EVIDENCE_NET_MAX, "%s", net);
    h->top[i].count = invalid;
    h->top[i].block_ms = block_ms;
    if (w->n < HARVEST_TOP)
        w->n++;
}

void harvest_stats(struct harvest *h, struct stats_extra *x)
{
    struct top_walk w = { h, 0, util_wall_ms(), 0 };

    evidence_walk(h->ev, top_add, &w);
    for (unsigned i = 0; i < w.n; i++)
        h->top[i].net = h->top_names[i];
    x->top = h->top;
    x->ntop = w.n;
    x->blocked_now = w.blocked;
    x->tracked_now = evidence_tracked(h->ev);
}
