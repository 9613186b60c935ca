/*
 * loadgen - a policy client that talks like a busy Postfix
 *
 * SYNOPSIS
 *	loadgen [-h host] [-p port | -u path] [-c conns] [-d secs | -n reqs]
 *		[-w warmup] [options]
 *
 * DESCRIPTION
 *	Opens conns connections to a policy server and keeps exactly one
 *	request outstanding on each, as Postfix's smtpd does (it never
 *	pipelines).  Every request carries the attribute set Postfix sends
 *	(SMTPD_POLICY_README: 2.1 through 3.7, plus the 3.8 compatibility_level
 *	and mail_version, which a server must ignore like any unknown name).
 *	Recipients mix valid and invalid addresses; client addresses come from
 *	a pool of distinct IPv4 (198.18.0.0/15, RFC 2544) and IPv6
 *	(2001:db8::/32) networks, each in its own /24 or /64.
 *
 *	Latency is taken from the first byte written to the reply's empty line
 *	and kept in a fixed log-bucket histogram (64 sub-buckets per power of
 *	two, about 1.6% resolution), so recording costs no allocation.
 *
 * OPTIONS
 *	-h host, -p port	TCP server (IPv4 or IPv6 literal)
 *	-u path			UNIX-domain server instead
 *	-c n			active connections (default 50)
 *	-d secs			measure for secs (default 5; fractions allowed)
 *	-n n			stop after n measured answers (-d, if given,
 *				still bounds the run)
 *	-w secs			warm-up before measuring (not recorded)
 *	--valid-ratio r		fraction of valid recipients (default 0.9)
 *	--pattern p		valid recipients: p with %d (or %05d) replaced
 *				by an index (default user%d@example.com)
 *	--valid-range n		valid indexes 0..n-1 (default 1000)
 *	--recipients-file f	valid recipients from f, one a line
 *	--invalid-pattern p	invalid recipients (default nobody%d@example.com)
 *	--invalid-range n	invalid indexes 0..n-1; 0 = never repeat (default)
 *	--sequential		walk indexes in order instead of at random
 *	--clients n		distinct client addresses (default 1000)
 *	--ipv6-ratio r		fraction of them that are IPv6 (default 0.25)
 *	--client addr		one fixed client_address for every request
 *	--state s		protocol_state (default RCPT)
 *	--idle n		also open n connections that never send; prints
 *				"idle_connected=n" once they are all up
 *	--drain secs		wait this long for answers after the end (1)
 *	--connect-burst n	connects in progress at once (default 200)
 *	--progress secs		print a "progress ..." line this often
 *	--seed n		PRNG seed
 *	--rate r		at most r requests/s in all (paced in 1 ms
 *				ticks): latency without self-inflicted queueing
 *
 * OUTPUT
 *	stdout: optional "idle_connected=" and "progress" lines, then one line
 *	  requests=N errors=N unanswered=N secs=S rps=R p50_us=.. p90_us=..
 *	  p99_us=.. p999_us=.. max_us=.. actions=DUNNO:n,550:n valid_not_dunno=N
 *	  invalid_dunno=N idle=N cpu_s=S (our own CPU time, whole run)
 *	  answers_total=N (warm-up included)
 *	stderr: the same in words.
 *	Exit status 0, or 1 when nothing was answered.
 *
 * LIMITS
 *	LG_MAX_CONNS connections, replies up to LG_RBUF bytes, requests up to
 *	LG_QBUF bytes, LG_ACTIONS distinct action words (the rest count as
 *	"other").
 */

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "../../policyd/util.h"

#define LG_MAX_CONNS 100000
#define LG_RBUF 1024            /* a reply is one short line */
#define LG_QBUF 2048            /* a Postfix request is ~700 bytes */
#define LG_PATTERN_MAX 256      /* an expanded recipient */
#define LG_ACTIONS 16
#define LG_ACTION_LEN 32
#define LG_MAX_FILE_LINES 10000000

/* Histogram: values in ns; 64 linear sub-buckets per power of two. */
#define LG_SUB_BITS 6
#define LG_SUB (1u << LG_SUB_BITS)
#define LG_HIST_BUCKETS (LG_SUB * 40)

enum { LG_CONNECTING, LG_READY, LG_WAITING, LG_CLOSING, LG_DEAD };

struct lg_conn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    uv_connect_t creq;
    uv_write_t wreq;
    struct lg_conn *next_retry;
    int state;
    int idle;                   /* never sends a request */
    int valid;                  /* the outstanding recipient is valid */
    int measured;               /* the outstanding request counts */
    int retry_queued;
    int rate_queued;            /* waiting for a --rate token */
    uint64_t sent_ns;
    size_t rlen;
    char rbuf[LG_RBUF];
    char qbuf[LG_QBUF];
};

struct lg_opts {
    const char *host;
    unsigned port;
    const char *path;
    unsigned conns;
    double duration;
    unsigned long long nreq;
    double warmup;
    double valid_ratio;
    const char *pattern;
    unsigned long long valid_range;
    const char *recipients_file;
    const char *invalid_pattern;
    unsigned long long invalid_range;
    int sequential;
    unsigned long long clients;
    double ipv6_ratio;
    const char *client;
    const char *state;
    unsigned idle;
    double drain;
    unsigned connect_burst;
    double progress;
    unsigned long long seed;
    double rate;
};

static struct lg_opts opt = {
    "127.0.0.1", 0, NULL, 50, 5.0, 0, 0.0, 0.9, "user%d@example.com", 1000,
    NULL, "nobody%d@example.com", 0, 0, 1000, 0.25, NULL, "RCPT", 0, 1.0,
    200, 0.0, 0x9e3779b97f4a7c15ULL, 0.0,
};

static uv_loop_t *lg_loop;
static struct sockaddr_storage lg_addr;
static struct lg_conn *lg_conns;
static unsigned lg_nconns;          /* active + idle */
static unsigned lg_next_connect;    /* next connection to start */
static unsigned lg_connecting;      /* connects in progress */
static unsigned lg_idle_up;
static int lg_idle_reported;
static struct lg_conn *lg_retry_head;

static uv_timer_t lg_warmup_timer, lg_end_timer, lg_drain_timer;
static uv_timer_t lg_progress_timer, lg_retry_timer, lg_rate_timer;

/* --rate: connections wait in a ring for a token; tokens accrue per tick. */
static struct lg_conn **lg_ring;
static size_t lg_ring_head, lg_ring_len;
static double lg_tokens;
static uint64_t lg_rate_last;
static uv_signal_t lg_sigint, lg_sigterm;

static int lg_measuring;            /* warm-up over */
static int lg_stopping;             /* no new requests */
static int lg_finished;
static uint64_t lg_t_start, lg_t_end;

static char **lg_file;
static size_t lg_nfile;
static uint64_t lg_rng;
static unsigned long long lg_seq_valid, lg_seq_invalid, lg_seq_queue;

/* Counters of the measured phase. */
static unsigned long long lg_issued;        /* measured requests sent */
static unsigned long long lg_done;          /* measured answers */
static unsigned long long lg_done_in_window;
static unsigned long long lg_outstanding;   /* any phase */
static unsigned long long lg_errors;        /* connection failures */
static unsigned long long lg_lost;          /* requests lost with a connection */
static unsigned long long lg_valid_not_dunno, lg_invalid_dunno;
static unsigned long long lg_total_answers; /* warm-up included */
static uint64_t lg_hist[LG_HIST_BUCKETS];
static uint64_t lg_max_ns;

static struct {
    char word[LG_ACTION_LEN];
    unsigned long long n;
} lg_actions[LG_ACTIONS];
static unsigned lg_nactions;
static unsigned long long lg_actions_other;

static void lg_send(struct lg_conn *c);
static void lg_next(struct lg_conn *c);
static void lg_start_connect(struct lg_conn *c);
static void lg_stop(void);
static void lg_finish(void);

/* ---- numbers ---- */

static uint64_t lg_rand(void)
{
    /* xorshift64*: fast, and good enough to pick recipients */
    lg_rng ^= lg_rng >> 12;
    lg_rng ^= lg_rng << 25;
    lg_rng ^= lg_rng >> 27;
    return lg_rng * 0x2545F4914F6CDD1DULL;
}

static double lg_rand01(void)
{
    return (double) (lg_rand() >> 11) / 9007199254740992.0;
}

static unsigned lg_hist_index(uint64_t v)
{
    unsigned msb, shift, idx;

    if (v < 2 * LG_SUB)
        return (unsigned) v;
    msb = 63u - (unsigned) __builtin_clzll(v);
    shift = msb - LG_SUB_BITS;
    idx = LG_SUB * (shift + 1) + (unsigned) ((v >> shift) - LG_SUB);
    return idx < LG_HIST_BUCKETS ? idx : LG_HIST_BUCKETS - 1;
}

/* The middle of bucket idx, in ns. */
static double lg_hist_value(unsigned idx)
{
    unsigned shift;
    uint64_t low;

    if (idx < 2 * LG_SUB)
        return (double) idx;
    shift = idx / LG_SUB - 1;
    low = (uint64_t) (LG_SUB + idx % LG_SUB) << shift;
    return (double) low + (double) ((uint64_t) 1 << shift) / 2.0;
}

static double lg_percentile_us(double q)
{
    uint64_t need, seen = 0;
    unsigned i;

    if (lg_done == 0)
        return 0.0;
    need = (uint64_t) ceil(q * (double) lg_done);
    if (need == 0)
        need = 1;
    for (i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += lg_hist[i];
        if (seen >= need) {
            double v = lg_hist_value(i);

            return (v > (double) lg_max_ns ? (double) lg_max_ns : v) / 1000.0;
        }
    }
    return (double) lg_max_ns / 1000.0;
}

static int lg_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* ---- requests ---- */

/* Expand the first %d, %u or %0Nd of pattern with n; the pattern comes
 * from the command line, so it is never handed to printf as a format. */
static int lg_expand(const char *pattern, unsigned long long n, char *out, size_t cap)
{
    const char *p, *q = NULL;
    unsigned width = 0;
    int len;

    for (p = pattern; (p = strchr(p, '%')) != NULL; p++) {
        width = 0;
        q = p + 1;
        if (*q == '0')
            while (*q >= '0' && *q <= '9' && width < 100)
                width = width * 10 + (unsigned) (*q++ - '0');
        if (*q == 'd' || *q == 'u')
            break;
    }
    if (p == NULL)
        len = snprintf(out, cap, "%s", pattern);
    else
        len = snprintf(out, cap, "%.*s%0*llu%s", (int) (p - pattern), pattern,
                       (int) width, n, q + 1);
    return len < 0 || (size_t) len >= cap ? -1 : 0;
}

static void lg_client_addr(unsigned long long i, char *out, size_t cap)
{
    if (opt.client) {
        snprintf(out, cap, "%s", opt.client);
        return;
    }
    /* The v6 share is spread over the pool, not bunched at one end. */
    if ((double) ((i * 2654435761ULL) % 1000) < opt.ipv6_ratio * 1000.0) {
        snprintf(out, cap, "2001:db8:%x:%x::%x", (unsigned) ((i >> 16) & 0xffff),
                 (unsigned) (i & 0xffff), (unsigned) (1 + i % 250));
    } else {
        /* Low bits in the third octet: neighbours land in distinct /24s. */
        snprintf(out, cap, "198.%u.%u.%u", 18 + (unsigned) ((i >> 16) & 1),
                 (unsigned) (i & 255), 1 + (unsigned) ((i >> 8) % 254));
    }
}

static int lg_build(struct lg_conn *c, size_t *len)
{
    char rcpt[LG_PATTERN_MAX], client[64], cname[64];
    unsigned long long ci, idx, qid;
    unsigned cport;
    int n;

    c->valid = lg_rand01() < opt.valid_ratio;
    if (c->valid) {
        if (lg_nfile > 0) {
            idx = opt.sequential ? lg_seq_valid++ % lg_nfile : lg_rand() % lg_nfile;
            snprintf(rcpt, sizeof(rcpt), "%s", lg_file[idx]);
        } else {
            idx = opt.sequential ? lg_seq_valid++ % opt.valid_range
                : lg_rand() % opt.valid_range;
            if (lg_expand(opt.pattern, idx, rcpt, sizeof(rcpt)) < 0)
                return -1;
        }
    } else {
        if (opt.invalid_range == 0)
            idx = lg_seq_invalid++;
        else
            idx = opt.sequential ? lg_seq_invalid++ % opt.invalid_range
                : lg_rand() % opt.invalid_range;
        if (lg_expand(opt.invalid_pattern, idx, rcpt, sizeof(rcpt)) < 0)
            return -1;
    }
    ci = opt.clients > 0 ? lg_rand() % opt.clients : 0;
    lg_client_addr(ci, client, sizeof(client));
    /* One client in eight has no PTR record: Postfix says "unknown". */
    if (ci % 8 == 7)
        snprintf(cname, sizeof(cname), "unknown");
    else
        snprintf(cname, sizeof(cname), "mx%llu.example.net", ci);
    qid = lg_seq_queue++;
    cport = 1024 + (unsigned) (lg_rand() % 64000);

    /* The order and the empty values are what smtpd_check.c sends for an
     * unauthenticated client over TLS without a client certificate. */
    n = snprintf(c->qbuf, sizeof(c->qbuf),
                 "request=smtpd_access_policy\n"
                 "protocol_state=%s\n"
                 "protocol_name=ESMTP\n"
                 "helo_name=mx%llu.example.net\n"
                 "queue_id=4Z%010llX\n"
                 "sender=news%llu@lists.example.net\n"
                 "recipient=%s\n"
                 "recipient_count=0\n"
                 "client_address=%s\n"
                 "client_name=%s\n"
                 "reverse_client_name=mx%llu.example.net\n"
                 "instance=%llx.%llx.%llx.0\n"
                 "sasl_method=\n"
                 "sasl_username=\n"
                 "sasl_sender=\n"
                 "size=%llu\n"
                 "ccert_subject=\n"
                 "ccert_issuer=\n"
                 "ccert_fingerprint=\n"
                 "ccert_pubkey_fingerprint=\n"
                 "encryption_protocol=TLSv1.3\n"
                 "encryption_cipher=TLS_AES_256_GCM_SHA384\n"
                 "encryption_keysize=256\n"
                 "etrn_domain=\n"
                 "stress=\n"
                 "server_address=192.0.2.25\n"
                 "server_port=25\n"
                 "client_port=%u\n"
                 "policy_context=\n"
                 "compatibility_level=3.6\n"
                 "mail_version=3.7.11\n"
                 "\n",
                 opt.state, ci, qid, ci % 97, rcpt, client, cname, ci,
                 qid & 0xfffff, (qid * 7) & 0xffff, qid,
                 1000 + (qid * 7919) % 200000, cport);
    if (n < 0 || (size_t) n >= sizeof(c->qbuf))
        return -1;
    *len = (size_t) n;
    return 0;
}

/* ---- connections ---- */

static void lg_queue_retry(struct lg_conn *c)
{
    if (c->retry_queued || lg_stopping)
        return;
    c->retry_queued = 1;
    c->next_retry = lg_retry_head;
    lg_retry_head = c;
}

static void lg_conn_closed(uv_handle_t *h)
{
    struct lg_conn *c = h->data;

    c->state = LG_DEAD;
    if (!lg_finished)
        lg_queue_retry(c);
}

static void lg_conn_fail(struct lg_conn *c)
{
    if (lg_finished || c->state == LG_CLOSING || c->state == LG_DEAD
        || uv_is_closing(&c->h.handle))
        return;
    lg_errors++;
    if (c->state == LG_WAITING) {
        lg_outstanding--;
        if (c->measured)
            lg_lost++;
    }
    if (c->idle && c->state != LG_CONNECTING)
        lg_idle_up--;
    c->state = LG_CLOSING;
    uv_close(&c->h.handle, lg_conn_closed);
    if (lg_stopping && lg_outstanding == 0)
        lg_finish();
}

static void lg_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct lg_conn *c = h->data;

    (void) hint;
    buf->base = c->rbuf + c->rlen;
    buf->len = LG_RBUF - c->rlen;
}

static void lg_count_action(const char *reply, size_t len, int valid)
{
    char word[LG_ACTION_LEN];
    size_t i, n = 0;
    unsigned k;

    if (len >= 7 && memcmp(reply, "action=", 7) == 0) {
        for (i = 7; i < len && n + 1 < sizeof(word); i++) {
            if (reply[i] == ' ' || reply[i] == '\n' || reply[i] == '\t')
                break;
            /* the word goes into our output: keep it printable */
            word[n++] = (reply[i] > ' ' && reply[i] < 127 && reply[i] != ','
                         && reply[i] != ':') ? reply[i] : '?';
        }
    }
    word[n] = '\0';
    if (n == 0)
        snprintf(word, sizeof(word), "malformed");

    if (valid && strcmp(word, "DUNNO") != 0)
        lg_valid_not_dunno++;
    if (!valid && strcmp(word, "DUNNO") == 0)
        lg_invalid_dunno++;
    for (k = 0; k < lg_nactions; k++) {
        if (strcmp(lg_actions[k].word, word) == 0) {
            lg_actions[k].n++;
            return;
        }
    }
    if (lg_nactions < LG_ACTIONS) {
        memcpy(lg_actions[lg_nactions].word, word, sizeof(word));
        lg_actions[lg_nactions++].n = 1;
    } else {
        lg_actions_other++;
    }
}

static void lg_on_reply(struct lg_conn *c, size_t end)
{
    uint64_t now = uv_hrtime();

    lg_outstanding--;
    lg_total_answers++;
    c->state = LG_READY;
    if (c->measured && lg_measuring) {
        uint64_t d = now - c->sent_ns;

        lg_done++;
        if (!lg_stopping)
            lg_done_in_window++;
        lg_hist[lg_hist_index(d)]++;
        if (d > lg_max_ns)
            lg_max_ns = d;
        lg_count_action(c->rbuf, end, c->valid);
        if (opt.nreq > 0 && lg_done >= opt.nreq)
            lg_stop();
    }
    /* Replies are never pipelined: anything after the empty line is junk. */
    if (end + 2 != c->rlen) {
        lg_conn_fail(c);
        return;
    }
    c->rlen = 0;
    if (lg_stopping) {
        if (lg_outstanding == 0)
            lg_finish();
        return;
    }
    lg_next(c);
}

static void lg_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct lg_conn *c = s->data;
    size_t i, from;

    (void) buf;
    if (n == 0)
        return;
    if (n < 0 || c->idle || c->state != LG_WAITING) {
        lg_conn_fail(c);
        return;
    }
    from = c->rlen > 0 ? c->rlen - 1 : 0;
    c->rlen += (size_t) n;
    for (i = from; i + 1 < c->rlen; i++) {
        if (c->rbuf[i] == '\n' && c->rbuf[i + 1] == '\n') {
            lg_on_reply(c, i);
            return;
        }
    }
    if (c->rlen == LG_RBUF)
        lg_conn_fail(c);
}

static void lg_write_cb(uv_write_t *w, int status)
{
    struct lg_conn *c = w->data;

    if (status < 0 && status != UV_ECANCELED)
        lg_conn_fail(c);
}

static void lg_send(struct lg_conn *c)
{
    size_t len;
    uv_buf_t b;

    if (lg_stopping || c->state != LG_READY)
        return;
    if (opt.nreq > 0 && lg_measuring && lg_issued >= opt.nreq)
        return;
    if (lg_build(c, &len) < 0) {
        fprintf(stderr, "loadgen: a request does not fit in %d bytes\n", LG_QBUF);
        lg_stopping = 1;
        lg_finish();
        return;
    }
    c->measured = lg_measuring;
    if (lg_measuring)
        lg_issued++;
    c->state = LG_WAITING;
    c->rlen = 0;
    lg_outstanding++;
    c->sent_ns = uv_hrtime();
    b = uv_buf_init(c->qbuf, (unsigned) len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, &c->h.stream, &b, 1, lg_write_cb) != 0)
        lg_conn_fail(c);
}

/* Tokens accrue with time; no saving up while every connection is busy:
 * at most 2 ms worth. */
static void lg_refill(void)
{
    uint64_t now = uv_hrtime();
    double cap = opt.rate / 500.0 + 1.0;

    lg_tokens += opt.rate * (double) (now - lg_rate_last) / 1e9;
    lg_rate_last = now;
    if (lg_tokens > cap)
        lg_tokens = cap;
}

/* lg_next - send now, or with --rate when a token is free. */
static void lg_next(struct lg_conn *c)
{
    if (opt.rate <= 0) {
        lg_send(c);
        return;
    }
    if (c->rate_queued)
        return;
    lg_refill();
    if (lg_ring_len == 0 && lg_tokens >= 1.0) {
        lg_tokens -= 1.0;
        lg_send(c);
        return;
    }
    c->rate_queued = 1;
    lg_ring[(lg_ring_head + lg_ring_len++) % lg_nconns] = c;
}

static void lg_rate_tick(uv_timer_t *t)
{
    (void) t;
    lg_refill();
    while (lg_tokens >= 1.0 && lg_ring_len > 0 && !lg_stopping) {
        struct lg_conn *c = lg_ring[lg_ring_head];

        lg_ring_head = (lg_ring_head + 1) % lg_nconns;
        lg_ring_len--;
        c->rate_queued = 0;
        if (c->state == LG_READY) {
            lg_send(c);
            lg_tokens -= 1.0;
        }
    }
}

static void lg_pump_connects(void)
{
    while (!lg_finished && lg_connecting < opt.connect_burst && lg_next_connect < lg_nconns)
        lg_start_connect(&lg_conns[lg_next_connect++]);
}

static void lg_connected(uv_connect_t *req, int status)
{
    struct lg_conn *c = req->data;

    lg_connecting--;
    if (lg_finished)
        return;
    if (c->state == LG_CLOSING || c->state == LG_DEAD) {
        lg_pump_connects();
        return;
    }
    if (status < 0) {
        lg_conn_fail(c);
        lg_pump_connects();
        return;
    }
    if (!opt.path)
        uv_tcp_nodelay(&c->h.tcp, 1);
    c->state = LG_READY;
    if (uv_read_start(&c->h.stream, lg_alloc, lg_read) != 0) {
        lg_conn_fail(c);
    } else if (c->idle) {
        lg_idle_up++;
        if (!lg_idle_reported && lg_idle_up == opt.idle) {
            lg_idle_reported = 1;
            printf("idle_connected=%u\n", lg_idle_up);
            fflush(stdout);
        }
    } else {
        lg_next(c);
    }
    lg_pump_connects();
}

static void lg_start_connect(struct lg_conn *c)
{
    int rc;

    c->state = LG_CONNECTING;
    c->rlen = 0;
    c->retry_queued = 0;
    if (opt.path)
        rc = uv_pipe_init(lg_loop, &c->h.pipe, 0);
    else
        rc = uv_tcp_init(lg_loop, &c->h.tcp);
    if (rc != 0) {
        c->state = LG_DEAD;
        lg_errors++;
        return;
    }
    c->h.handle.data = c;
    c->creq.data = c;
    lg_connecting++;
    if (opt.path) {
        uv_pipe_connect(&c->creq, &c->h.pipe, opt.path, lg_connected);
    } else {
        rc = uv_tcp_connect(&c->creq, &c->h.tcp, (struct sockaddr *) &lg_addr, lg_connected);
        if (rc != 0) {
            lg_connecting--;
            lg_conn_fail(c);
        }
    }
}

/* Reconnect what failed, a few at a time, so a refusing server is not
 * hammered in a tight loop. */
static void lg_retry_tick(uv_timer_t *t)
{
    unsigned n = 0;

    (void) t;
    while (lg_retry_head && n < opt.connect_burst && !lg_stopping) {
        struct lg_conn *c = lg_retry_head;

        lg_retry_head = c->next_retry;
        c->retry_queued = 0;
        lg_start_connect(c);
        n++;
    }
}

/* ---- phases ---- */

static void lg_begin_measuring(void)
{
    lg_measuring = 1;
    lg_t_start = uv_hrtime();
}

static void lg_warmup_done(uv_timer_t *t)
{
    (void) t;
    lg_begin_measuring();
}

static void lg_drain_done(uv_timer_t *t)
{
    (void) t;
    lg_finish();
}

/* lg_stop - no new requests; wait at most --drain for those in flight. */
static void lg_stop(void)
{
    if (lg_stopping)
        return;
    lg_stopping = 1;
    lg_t_end = uv_hrtime();
    if (lg_outstanding == 0)
        lg_finish();
    else
        uv_timer_start(&lg_drain_timer, lg_drain_done, (uint64_t) (opt.drain * 1000.0), 0);
}

static void lg_end(uv_timer_t *t)
{
    (void) t;
    lg_stop();
}

static void lg_progress_tick(uv_timer_t *t)
{
    (void) t;
    printf("progress t=%.1f answered=%llu outstanding=%llu errors=%llu idle=%u\n",
           lg_t_start ? (double) (uv_hrtime() - lg_t_start) / 1e9 : 0.0,
           lg_total_answers, lg_outstanding, lg_errors, lg_idle_up);
    fflush(stdout);
}

static void lg_on_signal(uv_signal_t *s, int signum)
{
    (void) s;
    (void) signum;
    if (!lg_stopping) {
        lg_stopping = 1;
        lg_t_end = uv_hrtime();
    }
    lg_finish();
}

static void lg_close_walk(uv_handle_t *h, void *arg)
{
    (void) arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void lg_report(void)
{
    double secs, rps, cpu;
    struct rusage ru;
    unsigned k;

    if (lg_t_start == 0)
        lg_t_start = lg_t_end;
    secs = (double) (lg_t_end - lg_t_start) / 1e9;
    rps = secs > 0 ? (double) lg_done_in_window / secs : 0.0;
    printf("requests=%llu errors=%llu unanswered=%llu lost=%llu secs=%.3f rps=%.1f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f actions=",
           lg_done, lg_errors, lg_outstanding, lg_lost, secs, rps,
           lg_percentile_us(0.50), lg_percentile_us(0.90), lg_percentile_us(0.99),
           lg_percentile_us(0.999), (double) lg_max_ns / 1000.0);
    for (k = 0; k < lg_nactions; k++)
        printf("%s%s:%llu", k ? "," : "", lg_actions[k].word, lg_actions[k].n);
    if (lg_actions_other)
        printf("%sother:%llu", lg_nactions ? "," : "", lg_actions_other);
    if (lg_nactions == 0 && lg_actions_other == 0)
        printf("-");
    /* Our own CPU time: near secs means the generator, not the server,
     * may be the bottleneck. */
    getrusage(RUSAGE_SELF, &ru);
    cpu = (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6
        + (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
    printf(" valid_not_dunno=%llu invalid_dunno=%llu idle=%u cpu_s=%.2f answers_total=%llu\n",
           lg_valid_not_dunno, lg_invalid_dunno, lg_idle_up, cpu, lg_total_answers);
    fflush(stdout);

    fprintf(stderr,
            "loadgen: %llu answers in %.2f s over %u connections: %.0f requests/s\n"
            "loadgen: latency p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n"
            "loadgen: %llu connection errors, %llu requests still unanswered\n",
            lg_done, secs, opt.conns, rps, lg_percentile_us(0.50),
            lg_percentile_us(0.99), lg_percentile_us(0.999),
            (double) lg_max_ns / 1000.0, lg_errors, lg_outstanding);
}

static void lg_finish(void)
{
    if (lg_finished)
        return;
    lg_finished = 1;
    if (lg_t_end == 0)
        lg_t_end = uv_hrtime();
    lg_report();
    uv_walk(lg_loop, lg_close_walk, NULL);
}

/* ---- set-up ---- */

static void lg_load_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[LG_PATTERN_MAX + 2];
    size_t cap = 0;

    if (f == NULL) {
        fprintf(stderr, "loadgen: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    while (fgets(line, sizeof(line), f) && lg_nfile < LG_MAX_FILE_LINES) {
        size_t n = strcspn(line, "\r\n");

        line[n] = '\0';
        if (n == 0 || line[0] == '#' || n >= LG_PATTERN_MAX)
            continue;
        if (lg_nfile == cap) {
            cap = cap ? cap * 2 : 1024;
            lg_file = xrealloc(lg_file, cap * sizeof(*lg_file));
        }
        lg_file[lg_nfile++] = xstrdup(line);
    }
    fclose(f);
    if (lg_nfile == 0) {
        fprintf(stderr, "loadgen: %s: no recipients\n", path);
        exit(2);
    }
}

static void lg_usage(void)
{
    fprintf(stderr,
            "usage: loadgen [-h host] [-p port | -u path] [-c conns] [-d secs | -n reqs]\n"
            "         [-w warmup] [--valid-ratio r] [--pattern p] [--valid-range n]\n"
            "         [--recipients-file f] [--invalid-pattern p] [--invalid-range n]\n"
            "         [--sequential] [--clients n] [--ipv6-ratio r] [--client addr]\n"
            "         [--state s] [--idle n] [--drain secs] [--connect-burst n]\n"
            "         [--progress secs] [--seed n] [--rate r]\n");
    exit(2);
}

enum {
    OPT_VALID_RATIO = 256, OPT_PATTERN, OPT_VALID_RANGE, OPT_RCPT_FILE,
    OPT_INVALID_PATTERN, OPT_INVALID_RANGE, OPT_SEQUENTIAL, OPT_CLIENTS,
    OPT_IPV6_RATIO, OPT_CLIENT, OPT_STATE, OPT_IDLE, OPT_DRAIN, OPT_BURST,
    OPT_PROGRESS, OPT_SEED, OPT_RATE, OPT_HELP,
};

static const struct option lg_longopts[] = {
    {"duration", required_argument, NULL, 'd'},
    {"requests", required_argument, NULL, 'n'},
    {"connections", required_argument, NULL, 'c'},
    {"warmup", required_argument, NULL, 'w'},
    {"valid-ratio", required_argument, NULL, OPT_VALID_RATIO},
    {"pattern", required_argument, NULL, OPT_PATTERN},
    {"valid-range", required_argument, NULL, OPT_VALID_RANGE},
    {"recipients-file", required_argument, NULL, OPT_RCPT_FILE},
    {"invalid-pattern", required_argument, NULL, OPT_INVALID_PATTERN},
    {"invalid-range", required_argument, NULL, OPT_INVALID_RANGE},
    {"sequential", no_argument, NULL, OPT_SEQUENTIAL},
    {"clients", required_argument, NULL, OPT_CLIENTS},
    {"ipv6-ratio", required_argument, NULL, OPT_IPV6_RATIO},
    {"client", required_argument, NULL, OPT_CLIENT},
    {"state", required_argument, NULL, OPT_STATE},
    {"idle", required_argument, NULL, OPT_IDLE},
    {"drain", required_argument, NULL, OPT_DRAIN},
    {"connect-burst", required_argument, NULL, OPT_BURST},
    {"progress", required_argument, NULL, OPT_PROGRESS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"rate", required_argument, NULL, OPT_RATE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* A value the request carries must not break the protocol. */
static int lg_safe_value(const char *s)
{
    return strpbrk(s, "\n\r") == NULL && strlen(s) < LG_PATTERN_MAX;
}

static void lg_parse_args(int argc, char **argv)
{
    unsigned long long u;
    int ch, duration_set = 0;

    while ((ch = getopt_long(argc, argv, "h:p:u:c:d:n:w:", lg_longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p':
            if (util_parse_uint(optarg, 65535, &u) < 0) lg_usage();
            opt.port = (unsigned) u;
            break;
        case 'u': opt.path = optarg; break;
        case 'c':
            if (util_parse_uint(optarg, LG_MAX_CONNS, &u) < 0) lg_usage();
            opt.conns = (unsigned) u;
            break;
        case 'd':
            if (lg_parse_double(optarg, 0.01, 86400, &opt.duration) < 0) lg_usage();
            duration_set = 1;
            break;
        case 'n':
            if (util_parse_uint(optarg, 1ULL << 40, &opt.nreq) < 0 || opt.nreq == 0)
                lg_usage();
            break;
        case 'w':
            if (lg_parse_double(optarg, 0, 3600, &opt.warmup) < 0) lg_usage();
            break;
        case OPT_VALID_RATIO:
            if (lg_parse_double(optarg, 0, 1, &opt.valid_ratio) < 0) lg_usage();
            break;
        case OPT_PATTERN: opt.pattern = optarg; break;
        case OPT_VALID_RANGE:
            if (util_parse_uint(optarg, 1ULL << 40, &opt.valid_range) < 0
                || opt.valid_range == 0)
                lg_usage();
            break;
        case OPT_RCPT_FILE: opt.recipients_file = optarg; break;
        case OPT_INVALID_PATTERN: opt.invalid_pattern = optarg; break;
        case OPT_INVALID_RANGE:
            if (util_parse_uint(optarg, 1ULL << 40, &opt.invalid_range) < 0) lg_usage();
            break;
        case OPT_SEQUENTIAL: opt.sequential = 1; break;
        case OPT_CLIENTS:
            if (util_parse_uint(optarg, 1ULL << 32, &opt.clients) < 0) lg_usage();
            break;
        case OPT_IPV6_RATIO:
            if (lg_parse_double(optarg, 0, 1, &opt.ipv6_ratio) < 0) lg_usage();
            break;
        case OPT_CLIENT: opt.client = optarg; break;
        case OPT_STATE: opt.state = optarg; break;
        case OPT_IDLE:
            if (util_parse_uint(optarg, LG_MAX_CONNS, &u) < 0) lg_usage();
            opt.idle = (unsigned) u;
            break;
        case OPT_DRAIN:
            if (lg_parse_double(optarg, 0, 3600, &opt.drain) < 0) lg_usage();
            break;
        case OPT_BURST:
            if (util_parse_uint(optarg, LG_MAX_CONNS, &u) < 0 || u == 0) lg_usage();
            opt.connect_burst = (unsigned) u;
            break;
        case OPT_PROGRESS:
            if (lg_parse_double(optarg, 0.01, 3600, &opt.progress) < 0) lg_usage();
            break;
        case OPT_RATE:
            if (lg_parse_double(optarg, 0, 1e8, &opt.rate) < 0) lg_usage();
            break;
        case OPT_SEED:
            if (util_parse_uint(optarg, ~0ULL, &opt.seed) < 0) lg_usage();
            break;
        default: lg_usage();
        }
    }
    if (opt.nreq > 0 && !duration_set)
        opt.duration = 86400;       /* -n alone: until n answers */
    if (optind != argc || (opt.path == NULL && opt.port == 0)
        || opt.conns + opt.idle == 0 || opt.conns + opt.idle > LG_MAX_CONNS)
        lg_usage();
    if (!lg_safe_value(opt.pattern) || !lg_safe_value(opt.invalid_pattern)
        || !lg_safe_value(opt.state) || (opt.client && !lg_safe_value(opt.client))) {
        fprintf(stderr, "loadgen: values must be one short line\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    unsigned i;
    int rc;

    lg_parse_args(argc, argv);
    lg_rng = opt.seed ? opt.seed : 1;
    if (opt.recipients_file)
        lg_load_file(opt.recipients_file);
    if (!opt.path) {
        if (strchr(opt.host, ':'))
            rc = uv_ip6_addr(opt.host, (int) opt.port, (struct sockaddr_in6 *) &lg_addr);
        else
            rc = uv_ip4_addr(opt.host, (int) opt.port, (struct sockaddr_in *) &lg_addr);
        if (rc != 0) {
            fprintf(stderr, "loadgen: %s: %s\n", opt.host, uv_strerror(rc));
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    lg_loop = uv_default_loop();

    /* Idle connections first, so active ones find them already open. */
    lg_nconns = opt.conns + opt.idle;
    lg_conns = xcalloc(lg_nconns, sizeof(*lg_conns));
    for (i = 0; i < lg_nconns; i++) {
        lg_conns[i].idle = i < opt.idle;
        lg_conns[i].state = LG_DEAD;
    }

    uv_timer_init(lg_loop, &lg_warmup_timer);
    uv_timer_init(lg_loop, &lg_end_timer);
    uv_timer_init(lg_loop, &lg_drain_timer);
    uv_timer_init(lg_loop, &lg_progress_timer);
    uv_timer_init(lg_loop, &lg_retry_timer);
    uv_timer_init(lg_loop, &lg_rate_timer);
    uv_signal_init(lg_loop, &lg_sigint);
    uv_signal_init(lg_loop, &lg_sigterm);
    uv_signal_start(&lg_sigint, lg_on_signal, SIGINT);
    uv_signal_start(&lg_sigterm, lg_on_signal, SIGTERM);
    uv_timer_start(&lg_retry_timer, lg_retry_tick, 20, 20);
    if (opt.rate > 0) {
        lg_ring = xcalloc(lg_nconns, sizeof(*lg_ring));
        lg_rate_last = uv_hrtime();
        uv_timer_start(&lg_rate_timer, lg_rate_tick, 1, 1);
    }
    if (opt.progress > 0) {
        uint64_t ms = (uint64_t) (opt.progress * 1000.0);

        uv_timer_start(&lg_progress_timer, lg_progress_tick, ms, ms);
    }
    if (opt.warmup > 0)
        uv_timer_start(&lg_warmup_timer, lg_warmup_done, (uint64_t) (opt.warmup * 1000.0), 0);
    else
        lg_begin_measuring();
    uv_timer_start(&lg_end_timer, lg_end,
                   (uint64_t) ((opt.warmup + opt.duration) * 1000.0), 0);

    lg_pump_connects();
    uv_run(lg_loop, UV_RUN_DEFAULT);
    uv_loop_close(lg_loop);

    for (i = 0; i < lg_nfile; i++)
        free(lg_file[i]);
    free(lg_file);
    free(lg_conns);
    free(lg_ring);
    return lg_total_answers > 0 || opt.conns == 0 ? 0 : 1;
}
