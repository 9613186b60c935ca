/*
 * NAME
 *	stats 3 - counters, fixed-bucket histograms and their renderings
 * SYNOPSIS
 *	#include "stats.h"
 *
 *	extern struct stats stats;
 *
 *	void stats_init(void);
 *	const char *stats_verdict_name(enum stats_verdict v);
 *	void stats_hist_add(struct stats_hist *h, uint64_t us);
 *	uint64_t stats_hist_quantile(const struct stats_hist *h, double q);
 *	enum stats_state stats_state_of(const char *protocol_state);
 *
 *	void stats_render_text(struct sbuf *out, const struct stats_extra *x);
 *	void stats_render_json(struct sbuf *out, const struct stats_extra *x);
 *	void stats_render_prometheus(struct sbuf *out,
 *				     const struct stats_extra *x);
 * DESCRIPTION
 *	One process-wide struct of counters, written only by the loop
 *	thread.  Histograms have STATS_BUCKETS fixed upper bounds in
 *	microseconds (stats_bounds_us[]), from 50 us to 100 s plus +Inf, so
 *	that both fast cached answers and tarpit delays of many seconds are
 *	told apart.  Recording is a linear scan over 17 bounds.
 *
 *	stats_hist_quantile() returns the upper bound of the bucket holding
 *	the q-quantile (0 for an empty histogram; UINT64_MAX when it falls in
 *	the +Inf bucket).
 *
 *	stats_render_text() appends an aligned table for people;
 *	stats_render_json() one JSON object with stable key names (see
 *	policyctl(1)); stats_render_prometheus() the Prometheus text
 *	exposition format 0.0.4 with policyd_* names.  Strings that came
 *	from the network (network keys) are escaped for each format.
 * SEE ALSO
 *	control(3), metrics(3), policyctl(1)
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "stats.h"

struct stats stats;

/* Upper bounds in microseconds.  Fine steps where cached and directory
 * answers land, coarse ones where tarpit delays (seconds) land; 30 s is
 * the default tarpit_max, 100 s Postfix's default policy time-out
 * (above it Postfix has given up: contrib/prometheus alerts on it). */
const uint64_t stats_bounds_us[STATS_BUCKETS] = {
    50, 100, 250, 500,
    1000, 2500, 5000, 10000,
    25000, 50000, 100000, 250000,
    1000000, 5000000, 30000000, 100000000, UINT64_MAX,
};

static const char *const state_names[STATE_MAX] = {
    "CONNECT", "EHLO", "HELO", "MAIL", "RCPT",
    "DATA", "END-OF-MESSAGE", "VRFY", "ETRN", "OTHER",
};

static const char *const verdict_names[VERDICT_MAX] = {
    "accepted", "unknown", "tempfail", "blocked", "deferred",
};

/* The most top networks any renderer prints: the caller's list is already
 * bounded, this only caps what one reply can grow to. */
#define STATS_TOP_MAX 100

const char *stats_verdict_name(enum stats_verdict v)
{
    return verdict_names[v];
}

void stats_init(void)
{
    memset(&stats, 0, sizeof(stats));
    stats.start_ms = util_now_ms();
    stats.start_wall = (uint64_t) time(NULL);
}

void stats_hist_add(struct stats_hist *h, uint64_t us)
{
    unsigned i;

    for (i = 0; i < STATS_BUCKETS - 1; i++)
        if (us <= stats_bounds_us[i])
            break;
    h->bucket[i]++;
    h->count++;
    h->sum_us += us;
}

uint64_t stats_hist_quantile(const struct stats_hist *h, double q)
{
    uint64_t rank, seen = 0;
    unsigned i;

    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    /* The rank-th smallest sample, 1-based, rounded up: p50 of 2 samples
     * is the first one, p99 of 100 is the 99th. */
    rank = (uint64_t) (q * (double) h->count);
    if ((double) rank < q * (double) h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    for (i = 0; i < STATS_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank)
            return stats_bounds_us[i];
    }
    return stats_bounds_us[STATS_BUCKETS - 1];
}

enum stats_state stats_state_of(const char *s)
{
    unsigned i;

    if (s == NULL)
        return STATE_OTHER;
    /* the first letter, in either case, before the call (every
     * request asks; RCPT is the fifth name) */
    for (i = 0; i < STATE_OTHER; i++)
        if ((s[0] | 0x20) == (state_names[i][0] | 0x20) && strcasecmp(s, state_names[i]) == 0)
            return (enum stats_state) i;
    return STATE_OTHER;
}

/* ---- helpers ---- */

static uint64_t uptime_s(void)
{
    uint64_t now = util_now_ms();

    return now > stats.start_ms ? (now - stats.start_ms) / 1000 : 0;
}

/* "0.00005" for 50 us: exact decimal seconds, no exponent, trailing zeros
 * dropped, as Prometheus le labels are usually written. */
static void put_seconds(struct sbuf *out, uint64_t us)
{
    char frac[8];
    int n;

    if (us == UINT64_MAX) {
        sbuf_puts(out, "+Inf");
        return;
    }
    snprintf(frac, sizeof(frac), "%06" PRIu64, us % 1000000);
    for (n = 6; n > 0 && frac[n - 1] == '0'; n--)
        frac[n - 1] = 0;
    if (n == 0)
        sbuf_printf(out, "%" PRIu64, us / 1000000);
    else
        sbuf_printf(out, "%" PRIu64 ".%s", us / 1000000, frac);
}

/* A duration for people: "850us", "12.5ms", "3.2s", ">100s". */
static void put_human_us(struct sbuf *out, uint64_t us)
{
    if (us == UINT64_MAX)
        sbuf_puts(out, ">100s");
    else if (us < 1000)
        sbuf_printf(out, "%" PRIu64 "us", us);
    else if (us < 1000000)
        sbuf_printf(out, "%.1fms", (double) us / 1000.0);
    else
        sbuf_printf(out, "%.1fs", (double) us / 1000000.0);
}

static void put_json_string(struct sbuf *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p;
    char esc[7];

    sbuf_puts(out, "\"");
    for (p = (const unsigned char *) (s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char) *p;
            sbuf_add(out, esc, 2);
        } else if (*p < 0x20 || *p >= 0x7f) {
            /* Bytes >= 0x7f too: the input is not known to be UTF-8, and
             * the output must stay valid JSON whatever arrives. */
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            sbuf_add(out, esc, 6);
        } else {
            sbuf_add(out, (const char *) p, 1);
        }
    }
    sbuf_puts(out, "\"");
}

/* Prometheus label values escape backslash, double quote and newline;
 * other control bytes are replaced so one line stays one line. */
static void put_prom_label(struct sbuf *out, const char *s)
{
    const unsigned char *p;

    for (p = (const unsigned char *) (s ? s : ""); *p; p++) {
        if (*p == '\\')
            sbuf_puts(out, "\\\\");
        else if (*p == '"')
            sbuf_puts(out, "\\\"");
        else if (*p == '\n')
            sbuf_puts(out, "\\n");
        else if (*p < 0x20 || *p >= 0x7f)
            sbuf_puts(out, "?");    /* labels must be UTF-8 */
        else
            sbuf_add(out, (const char *) p, 1);
    }
}

/* A network key for the text table: printable ASCII only, bounded. */
static void put_text_safe(struct sbuf *out, const char *s, size_t max)
{
    const unsigned char *p;
    size_t n = 0;

    for (p = (const unsigned char *) (s ? s : ""); *p && n < max; p++, n++) {
        if (*p < 0x20 || *p >= 0x7f)
            sbuf_puts(out, "?");
        else
            sbuf_add(out, (const char *) p, 1);
    }
}

static unsigned top_count(const struct stats_extra *x)
{
    if (x == NULL || x->top == NULL)
        return 0;
    return x->ntop > STATS_TOP_MAX ? STATS_TOP_MAX : x->ntop;
}

static uint64_t json_quantile(const struct stats_hist *h, double q)
{
    uint64_t v = stats_hist_quantile(h, q);

    /* JSON has no infinity: report the largest finite bound, which the
     * man page documents as "at least this". */
    return v == UINT64_MAX ? stats_bounds_us[STATS_BUCKETS - 2] : v;
}

static double ratio(uint64_t hits, uint64_t misses)
{
    return hits + misses ? (double) hits / (double) (hits + misses) : 0.0;
}

/* ---- text ---- */

#define ROW_U(label, v) \
    sbuf_printf(out, "  %-22s %" PRIu64 "\n", (label), (uint64_t) (v))

static void text_latency(struct sbuf *out, const char *label,
                         const struct stats_hist *h, int p90)
{
    sbuf_printf(out, "  %-22s p50 ", label);
    put_human_us(out, stats_hist_quantile(h, 0.50));
    if (p90) {
        sbuf_puts(out, "  p90 ");
        put_human_us(out, stats_hist_quantile(h, 0.90));
    }
    sbuf_puts(out, "  p99 ");
    put_human_us(out, stats_hist_quantile(h, 0.99));
    sbuf_printf(out, "  (%" PRIu64 " samples)\n", h->count);
}

void stats_render_text(struct sbuf *out, const struct stats_extra *x)
{
    uint64_t up = uptime_s();
    unsigned i, n = top_count(x);

    sbuf_printf(out, "uptime                   %" PRIu64 "d %02" PRIu64 ":%02"
                PRIu64 ":%02" PRIu64 " (%" PRIu64 " s)\n",
                up / 86400, up / 3600 % 24, up / 60 % 60, up % 60, up);

    sbuf_puts(out, "connections\n");
    ROW_U("current", stats.conn_current);
    ROW_U("total", stats.conn_total);
    ROW_U("refused", stats.conn_refused);
    ROW_U("protocol errors", stats.conn_protocol_errors);
    ROW_U("idle closed", stats.conn_idle_closed);

    sbuf_puts(out, "requests\n");
    ROW_U("total", stats.requests_total);
    for (i = 0; i < STATE_MAX; i++)
        if (stats.requests_by_state[i] || i == STATE_RCPT) {
            char label[40];

            snprintf(label, sizeof(label), "state %s", state_names[i]);
            ROW_U(label, stats.requests_by_state[i]);
        }
    for (i = 0; i < VERDICT_MAX; i++) {
        char label[40];

        snprintf(label, sizeof(label), "verdict %s", verdict_names[i]);
        ROW_U(label, stats.verdicts[i]);
    }
    ROW_U("delayed", stats.delayed_total);
    text_latency(out, "latency", &stats.latency, 1);

    sbuf_puts(out, "cache\n");
    sbuf_printf(out, "  %-22s %" PRIu64 " hits, %" PRIu64 " misses (%.1f%%)\n",
                "in-process (L1)", stats.l1_hits, stats.l1_misses,
                100.0 * ratio(stats.l1_hits, stats.l1_misses));
    sbuf_printf(out, "  %-22s %" PRIu64 " hits, %" PRIu64 " misses (%.1f%%)\n",
                "redis", stats.redis_hits, stats.redis_misses,
                100.0 * ratio(stats.redis_hits, stats.redis_misses));

    sbuf_puts(out, "directory\n");
    ROW_U("queries", stats.dir_queries);
    ROW_U("coalesced", stats.dir_coalesced);
    ROW_U("errors", stats.dir_errors);
    ROW_U("timeouts", stats.dir_timeouts);
    text_latency(out, "latency", &stats.dir_latency, 0);

    sbuf_puts(out, "redis\n");
    sbuf_printf(out, "  %-22s %s\n", "up", stats.redis_up ? "yes" : "no");
    ROW_U("errors", stats.redis_errors);
    ROW_U("reconnects", stats.redis_reconnects);

    sbuf_puts(out, "harvest\n");
    ROW_U("delayed now", stats.delayed_now);
    ROW_U("blocked now", x ? x->blocked_now : 0);
    ROW_U("tracked networks", x ? x->tracked_now : 0);
    ROW_U("blocked (total)", stats.blocked_networks_total);
    ROW_U("trap hits", stats.trap_hits_total);
    ROW_U("dry run: tarpits", stats.would_delay_networks_total);
    ROW_U("dry run: blocks", stats.would_block_networks_total);
    ROW_U("dry run: answers", stats.dry_run_answers_total);

    sbuf_puts(out, "siege\n");
    for (i = 0; x && i < x->nsiege; i++) {
        size_t start = out->len;

        sbuf_puts(out, "  ");
        put_text_safe(out, x->siege[i].domain, 22);
        while (out->len - start < 25)
            sbuf_puts(out, " ");
        sbuf_printf(out, "%s rate %.1f/min, trigger %.1f/min, deferred %" PRIu64
                    ", admitted %" PRIu64 "\n", x->siege[i].on ? "SIEGE " : "normal",
                    x->siege[i].rate, x->siege[i].trigger, x->siege[i].deferred,
                    x->siege[i].admitted);
    }

    sbuf_puts(out, "reloads\n");
    ROW_U("done", stats.reloads);
    ROW_U("failed", stats.reload_failures);

    sbuf_puts(out, "top offending networks\n");
    if (n == 0)
        sbuf_puts(out, "  (none)\n");
    else
        sbuf_printf(out, "  %-43s %10s  %s\n", "network", "unknown", "blocked for");
    for (i = 0; i < n; i++) {
        size_t start = out->len;

        sbuf_puts(out, "  ");
        put_text_safe(out, x->top[i].net, 43);
        while (out->len - start < 45)
            sbuf_puts(out, " ");
        sbuf_printf(out, " %10lld  ", x->top[i].count);
        if (x->top[i].block_ms > 0)
            sbuf_printf(out, "%lld.%03llds\n", x->top[i].block_ms / 1000,
                        x->top[i].block_ms % 1000);
        else
            sbuf_puts(out, "-\n");
    }
}

/* ---- JSON ---- */

void stats_render_json(struct sbuf *out, const struct stats_extra *x)
{
    unsigned i, n = top_count(x);

    sbuf_printf(out, "{\"uptime_s\":%" PRIu64 ",\"start_time\":%" PRIu64,
                uptime_s(), stats.start_wall);
    sbuf_printf(out, ",\"connections\":{\"current\":%" PRIu64 ",\"total\":%"
                PRIu64 ",\"refused\":%" PRIu64 ",\"protocol_errors\":%" PRIu64
                ",\"idle_closed\":%" PRIu64 "}",
                stats.conn_current, stats.conn_total, stats.conn_refused,
                stats.conn_protocol_errors, stats.conn_idle_closed);

    sbuf_printf(out, ",\"requests\":{\"total\":%" PRIu64 ",\"by_state\":{",
                stats.requests_total);
    for (i = 0; i < STATE_MAX; i++)
        sbuf_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "", state_names[i],
                    stats.requests_by_state[i]);
    sbuf_puts(out, "},\"by_verdict\":{");
    for (i = 0; i < VERDICT_MAX; i++)
        sbuf_printf(out, "\"%s\":%" PRIu64 ",", verdict_names[i], stats.verdicts[i]);
    sbuf_printf(out, "\"delayed\":%" PRIu64 "}}", stats.delayed_total);

    sbuf_printf(out, ",\"latency_us\":{\"p50\":%" PRIu64 ",\"p90\":%" PRIu64
                ",\"p99\":%" PRIu64 ",\"count\":%" PRIu64 ",\"sum\":%" PRIu64 "}",
                json_quantile(&stats.latency, 0.50),
                json_quantile(&stats.latency, 0.90),
                json_quantile(&stats.latency, 0.99),
                stats.latency.count, stats.latency.sum_us);

    sbuf_printf(out, ",\"cache\":{\"l1_hits\":%" PRIu64 ",\"l1_misses\":%" PRIu64
                ",\"redis_hits\":%" PRIu64 ",\"redis_misses\":%" PRIu64 "}",
                stats.l1_hits, stats.l1_misses, stats.redis_hits, stats.redis_misses);

    sbuf_printf(out, ",\"directory\":{\"queries\":%" PRIu64 ",\"coalesced\":%"
                PRIu64 ",\"errors\":%" PRIu64 ",\"timeouts\":%" PRIu64
                ",\"latency_us\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64
                ",\"count\":%" PRIu64 ",\"sum\":%" PRIu64 "}}",
                stats.dir_queries, stats.dir_coalesced, stats.dir_errors,
                stats.dir_timeouts,
                json_quantile(&stats.dir_latency, 0.50),
                json_quantile(&stats.dir_latency, 0.99),
                stats.dir_latency.count, stats.dir_latency.sum_us);

    sbuf_printf(out, ",\"redis\":{\"up\":%s,\"errors\":%" PRIu64
                ",\"reconnects\":%" PRIu64 "}",
                stats.redis_up ? "true" : "false",
                stats.redis_errors, stats.redis_reconnects);

    sbuf_printf(out, ",\"reloads\":{\"done\":%" PRIu64 ",\"failed\":%" PRIu64 "}",
                stats.reloads, stats.reload_failures);

    sbuf_printf(out, ",\"harvest\":{\"delayed_now\":%" PRIu64 ",\"blocked_now\":%"
                PRIu64 ",\"tracked\":%" PRIu64 ",\"blocked_total\":%" PRIu64
                ",\"trap_hits\":%" PRIu64 ",\"dry_run_tarpits\":%" PRIu64
                ",\"dry_run_blocks\":%" PRIu64 ",\"dry_run_answers\":%" PRIu64
                ",\"top\":[",
                stats.delayed_now, x ? x->blocked_now : 0,
                x ? x->tracked_now : 0, stats.blocked_networks_total,
                stats.trap_hits_total, stats.would_delay_networks_total,
                stats.would_block_networks_total, stats.dry_run_answers_total);
    for (i = 0; i < n; i++) {
        sbuf_puts(out, i ? ",{\"network\":" : "{\"network\":");
        put_json_string(out, x->top[i].net);
        sbuf_printf(out, ",\"count\":%lld,\"block_ms\":%lld}",
                    x->top[i].count, x->top[i].block_ms);
    }
    sbuf_puts(out, "]},\"siege\":[");
    for (i = 0; x && i < x->nsiege; i++) {
        sbuf_puts(out, i ? ",{\"domain\":" : "{\"domain\":");
        put_json_string(out, x->siege[i].domain);
        sbuf_printf(out, ",\"siege\":%s,\"rate\":%.1f,\"baseline\":%.2f,"
                    "\"trigger\":%.1f,\"deferred\":%" PRIu64 ",\"admitted\":%" PRIu64 "}",
                    x->siege[i].on ? "true" : "false", x->siege[i].rate,
                    x->siege[i].baseline, x->siege[i].trigger, x->siege[i].deferred,
                    x->siege[i].admitted);
    }
    sbuf_puts(out, "]}\n");
}

/* ---- Prometheus ---- */

static void prom_head(struct sbuf *out, const char *name, const char *type,
                      const char *help)
{
    sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_one(struct sbuf *out, const char *name, const char *type,
                     const char *help, uint64_t v)
{
    prom_head(out, name, type, help);
    sbuf_printf(out, "%s %" PRIu64 "\n", name, v);
}

static void prom_hist(struct sbuf *out, const char *name, const char *help,
                      const struct stats_hist *h)
{
    uint64_t cum = 0;
    unsigned i;

    prom_head(out, name, "histogram", help);
    for (i = 0; i < STATS_BUCKETS; i++) {
        cum += h->bucket[i];
        sbuf_printf(out, "%s_bucket{le=\"", name);
        put_seconds(out, stats_bounds_us[i]);
        sbuf_printf(out, "\"} %" PRIu64 "\n", cum);
    }
    sbuf_printf(out, "%s_sum ", name);
    put_seconds(out, h->sum_us);
    sbuf_printf(out, "\n%s_count %" PRIu64 "\n", name, h->count);
}

/* prom_siege - one field (0 state, 1 rate, 2 baseline, 3 trigger,
 * 4 deferred, 5 admitted) of every domain's siege */
static void prom_siege(struct sbuf *out, const struct stats_extra *x, const char *name,
                       const char *type, const char *help, int field)
{
    prom_head(out, name, type, help);
    for (unsigned i = 0; x && i < x->nsiege; i++) {
        const struct stats_siege *s = &x->siege[i];
        double v[] = { s->on, s->rate, s->baseline, s->trigger,
                       (double)s->deferred, (double)s->admitted };

        sbuf_printf(out, "%s{domain=\"", name);
        put_prom_label(out, s->domain);
        sbuf_printf(out, "\"} %.6g\n", v[field]);
    }
}

void stats_render_prometheus(struct sbuf *out, const struct stats_extra *x)
{
    unsigned i, n = top_count(x);

    prom_one(out, "policyd_start_time_seconds", "gauge",
             "Start time of the process since the Unix epoch.", stats.start_wall);
    prom_one(out, "policyd_uptime_seconds", "gauge",
             "Seconds since the process started.", uptime_s());

    prom_one(out, "policyd_connections", "gauge",
             "Policy connections open now.", stats.conn_current);
    prom_one(out, "policyd_connections_total", "counter",
             "Policy connections accepted.", stats.conn_total);
    prom_one(out, "policyd_connections_refused_total", "counter",
             "Policy connections refused over max_connections.", stats.conn_refused);
    prom_one(out, "policyd_connections_protocol_errors_total", "counter",
             "Policy connections closed for a malformed request.",
             stats.conn_protocol_errors);
    prom_one(out, "policyd_connections_idle_closed_total", "counter",
             "Policy connections closed by the idle timeout.", stats.conn_idle_closed);

    prom_head(out, "policyd_requests_total", "counter",
              "Policy requests by protocol_state.");
    for (i = 0; i < STATE_MAX; i++)
        sbuf_printf(out, "policyd_requests_total{state=\"%s\"} %" PRIu64 "\n",
                    state_names[i], stats.requests_by_state[i]);
    prom_head(out, "policyd_verdicts_total", "counter",
              "Answers to RCPT requests by verdict.");
    for (i = 0; i < VERDICT_MAX; i++)
        sbuf_printf(out, "policyd_verdicts_total{verdict=\"%s\"} %" PRIu64 "\n",
                    verdict_names[i], stats.verdicts[i]);
    prom_one(out, "policyd_delayed_total", "counter",
             "Answers delayed by the harvest tarpit.", stats.delayed_total);
    prom_one(out, "policyd_delayed_requests", "gauge",
             "Requests waiting in a tarpit delay now.", stats.delayed_now);
    prom_hist(out, "policyd_request_duration_seconds",
              "Time from a complete request to its answer, tarpit included.",
              &stats.latency);

    prom_head(out, "policyd_cache_hits_total", "counter",
              "Recipient answers found in a cache, by layer.");
    sbuf_printf(out, "policyd_cache_hits_total{layer=\"l1\"} %" PRIu64 "\n"
                "policyd_cache_hits_total{layer=\"redis\"} %" PRIu64 "\n",
                stats.l1_hits, stats.redis_hits);
    prom_head(out, "policyd_cache_misses_total", "counter",
              "Recipient answers not found in a cache, by layer.");
    sbuf_printf(out, "policyd_cache_misses_total{layer=\"l1\"} %" PRIu64 "\n"
                "policyd_cache_misses_total{layer=\"redis\"} %" PRIu64 "\n",
                stats.l1_misses, stats.redis_misses);

    prom_one(out, "policyd_directory_queries_total", "counter",
             "Queries sent to the directory backend.", stats.dir_queries);
    prom_one(out, "policyd_directory_coalesced_total", "counter",
             "Lookups that joined a directory query already in flight.",
             stats.dir_coalesced);
    prom_one(out, "policyd_directory_errors_total", "counter",
             "Directory queries that failed.", stats.dir_errors);
    prom_one(out, "policyd_directory_timeouts_total", "counter",
             "Directory queries that timed out.", stats.dir_timeouts);
    prom_hist(out, "policyd_directory_duration_seconds",
              "Time a directory query took.", &stats.dir_latency);

    prom_one(out, "policyd_redis_up", "gauge",
             "1 while the Redis connection is usable.", stats.redis_up ? 1 : 0);
    prom_one(out, "policyd_redis_configured", "gauge",
             "1 when [redis] is configured (so redis_up 0 means it is down).",
             stats.redis_stores > 0 ? 1 : 0);
    prom_one(out, "policyd_redis_errors_total", "counter",
             "Redis commands that failed.", stats.redis_errors);
    prom_one(out, "policyd_redis_reconnects_total", "counter",
             "Redis reconnections.", stats.redis_reconnects);

    prom_one(out, "policyd_blocked_networks", "gauge",
             "Client networks blocked now.", x ? x->blocked_now : 0);
    prom_one(out, "policyd_tracked_networks", "gauge",
             "Client networks with a standing in this process now.",
             x ? x->tracked_now : 0);
    prom_one(out, "policyd_blocked_networks_total", "counter",
             "Blocks earned by client networks (this process).",
             stats.blocked_networks_total);
    prom_one(out, "policyd_trap_hits_total", "counter",
             "Recipients asked that are trap addresses.", stats.trap_hits_total);
    prom_one(out, "policyd_dry_run_tarpits_total", "counter",
             "[harvest] dry_run: networks that would have been tarpitted.",
             stats.would_delay_networks_total);
    prom_one(out, "policyd_dry_run_blocks_total", "counter",
             "[harvest] dry_run: networks that would have been blocked.",
             stats.would_block_networks_total);
    prom_one(out, "policyd_dry_run_answers_total", "counter",
             "[actions] dry_run: answers turned into WARN.",
             stats.dry_run_answers_total);

    /* The few worst networks as a gauge: bounded by the caller's top list,
     * so label cardinality stays small. */
    prom_head(out, "policyd_network_unknown_recipients", "gauge",
              "Invalid recipients (faded, whole) of the top offending networks.");
    for (i = 0; i < n; i++) {
        sbuf_puts(out, "policyd_network_unknown_recipients{network=\"");
        put_prom_label(out, x->top[i].net);
        sbuf_printf(out, "\"} %lld\n", x->top[i].count);
    }

    /* one series per [directory] domain: bounded by the configuration */
    prom_siege(out, x, "policyd_siege", "gauge",
               "1 while the domain is under siege (distributed harvest).", 0);
    prom_siege(out, x, "policyd_siege_unknown_rate", "gauge",
               "Fleet-wide unknown recipients per minute from clients not established.", 1);
    prom_siege(out, x, "policyd_siege_baseline_rate", "gauge",
               "The domain's learned usual rate, per minute.", 2);
    prom_siege(out, x, "policyd_siege_trigger_rate", "gauge",
               "The rate above which a siege begins, per minute.", 3);
    prom_siege(out, x, "policyd_siege_deferred_clients_total", "counter",
               "Client networks deferred during sieges (this process).", 4);
    prom_siege(out, x, "policyd_siege_admitted_clients_total", "counter",
               "Client networks admitted after a retry during sieges (this process).", 5);

    prom_one(out, "policyd_reloads_total", "counter",
             "Configuration reloads applied.", stats.reloads);
    prom_one(out, "policyd_reload_failures_total", "counter",
             "Configuration reloads refused.", stats.reload_failures);
}
