/*
 * counts_driver - evidence.c and the Redis merge script, driven from a
 * test (test_counts_whole.py builds it against the built libpolicyd.a)
 *
 *	counts_driver script		print the merge script (sr_merge_lua)
 *	counts_driver expect		per stdin line "STORED|DELTA|FLOOR|NOW|HL"
 *					(wire forms; FLOOR may be empty) print
 *					what score.c makes of it: score_add
 *					then score_max, as the script must
 *	counts_driver drive CONF	an evidence table over the store CONF
 *					names; stdin commands, one a line:
 *	    wait_up MS			"up" once the store is shared, or "down"
 *	    record NET INV VAL TRAPS BLOCK_MS	(BLOCK_MS > 0: block until now+it)
 *	    read NET			"INV VAL TRAPS BLOCKED FROM_STORE"
 *	    run MS			turn the loop for MS
 *	    quit			evidence_free, store_free
 *	Every command answers one line, so the test waits on its answer.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../../backends/store.h"
#include "../../policyd/config.h"
#include "../../policyd/evidence.h"
#include "../../policyd/log.h"
#include "../../policyd/score.h"
#include "../../policyd/stats.h"
#include "../../policyd/util.h"

extern const char sr_merge_lua[];

static uv_loop_t *loop;

static int expect(void)
{
    char line[1024], buf[SCORE_WIRE_MAX];

    while (fgets(line, sizeof(line), stdin)) {
        char *f[5], *p = line;
        struct score s, d, fl;

        line[strcspn(line, "\n")] = '\0';
        for (int i = 0; i < 5; i++) {
            f[i] = p;
            p += strcspn(p, "|");
            if (*p)
                *p++ = '\0';
        }
        if (score_decode(f[0], strlen(f[0]), &s) < 0)
            memset(&s, 0, sizeof(s));           /* unparsable: empty */
        if (score_decode(f[1], strlen(f[1]), &d) < 0)
            return 2;
        uint64_t now = strtoull(f[3], NULL, 10), hl = strtoull(f[4], NULL, 10);
        score_add(&s, &d, now, hl);
        if (f[2][0]) {
            if (score_decode(f[2], strlen(f[2]), &fl) < 0)
                return 2;
            score_max(&s, &fl, now, hl);
        }
        score_encode(&s, buf, sizeof(buf));
        printf("%s\n", buf);
        fflush(stdout);
    }
    return 0;
}

static void noop_timer(uv_timer_t *t)
{
    (void)t;
}

static void run_for(uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, noop_timer, ms, 0);
    while (uv_is_active((uv_handle_t *)&t))
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

struct answer {
    int done, from_store;
    struct score s;
};

static void got(void *arg, const struct score *s, int from_store)
{
    struct answer *a = arg;
    a->done = 1;
    a->s = *s;
    a->from_store = from_store;
}

static int drive(const char *conf)
{
    char err[1024], line[512], net[128];
    struct config *cfg = config_load(conf, err, sizeof(err));
    struct store *st;
    struct evidence *ev;

    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);   /* as policyd: see backends/redis_uv.h */
    log_init("counts_driver", 0, LOG_LVL_INFO);
    stats_init();
    st = store_new(loop, cfg, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    ev = evidence_new(loop, cfg, st);
    while (fgets(line, sizeof(line), stdin)) {
        double inv, val, traps;
        unsigned long long ms;

        if (sscanf(line, "wait_up %llu", &ms) == 1) {
            uint64_t end = util_now_ms() + ms;
            while (!st->ops->shared(st) && util_now_ms() < end)
                run_for(10);
            printf("%s\n", st->ops->shared(st) ? "up" : "down");
        } else if (sscanf(line, "record %127s %lf %lf %lf %llu", net, &inv, &val,
                          &traps, &ms) == 5) {
            uint64_t now = util_wall_ms();
            struct score d = { inv, val, traps, now, ms ? now + ms : 0 };
            evidence_record(ev, net, &d);
            printf("ok\n");
        } else if (sscanf(line, "read %127s", net) == 1) {
            struct evidence_read r;
            struct answer a = { 0, 0, { 0, 0, 0, 0, 0 } };
            evidence_read(ev, net, &r, got, &a);
            while (!a.done)
                uv_run(loop, UV_RUN_ONCE);
            printf("%.6f %.6f %.6f %d %d\n", a.s.invalid, a.s.valid, a.s.traps,
                   a.s.block_until_ms > util_wall_ms(), a.from_store);
        } else if (sscanf(line, "run %llu", &ms) == 1) {
            run_for(ms);
            printf("ok\n");
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("? %s", line);
        }
        fflush(stdout);
    }
    evidence_free(ev);
    store_free(st);
    uv_run(loop, UV_RUN_DEFAULT);
    config_free(cfg);
    printf("bye\n");
    return 0;
}

int main(int argc, char **argv)
{
    loop = uv_default_loop();
    if (argc == 2 && strcmp(argv[1], "script") == 0) {
        fputs(sr_merge_lua, stdout);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "expect") == 0)
        return expect();
    if (argc == 3 && strcmp(argv[1], "drive") == 0)
        return drive(argv[2]);
    fprintf(stderr, "usage: counts_driver script | expect | drive CONF\n");
    return 2;
}
