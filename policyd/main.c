/*
 * policyd - Postfix policy server: refuse unknown recipients at RCPT TO,
 * tarpit and block directory harvesters
 *
 * SYNOPSIS
 *	policyd [-c FILE] [-t | -T [ADDRESS]] [-V] [-h]
 *
 * This file owns the process: arguments, config load, logging set-up,
 * sockets, the privilege drop, signals and the loop's start and end.
 * Everything a request touches lives in server.c and policy.c.
 *
 * Shutdown (SIGTERM, SIGINT): stop accepting, close idle connections, let
 * requests in flight get their answer, exit 0; after [server]
 * shutdown_timeout whatever is left is closed.  A second signal ends at once.
 * Reload (SIGHUP, or policyctl reload): a new config and directory are
 * built beside the running ones and swapped in; a bad one is refused and
 * the old one keeps serving.
 */

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../backends/directory.h"
#include "config.h"
#include "control.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "server.h"
#include "stats.h"
#include "util.h"

#define DEFAULT_CONFIG "/etc/policyd/policyd.conf"

struct daemon {
    uv_loop_t *loop;
    const char *config_path;
    struct policy *policy;
    struct server *server;
    struct control *control;
    struct metrics *metrics;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t shutdown_timer;
    int stopping;
};

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: policyd [-c FILE] [-t | -T [ADDRESS]] [-V] [-h]\n"
            "  -c FILE     configuration file (default " DEFAULT_CONFIG ")\n"
            "  -t          check the configuration and exit (0 = good)\n"
            "  -T [ADDR]   test the directory: connect, bind, look ADDR up, exit\n"
            "  -V          print the version\n"
            "  -h          this help\n");
}

static void apply_logging(const struct config *cfg)
{
    log_init("policyd", cfg->server.log == LOG_TO_SYSLOG,
             (enum log_level)cfg->server.log_level);
}

/* ---- reload ---- */

static const char *restart_only(const struct config *a, const struct config *b)
{
    int same = a->server.listen.n == b->server.listen.n;
    for (size_t i = 0; same && i < a->server.listen.n; i++)
        same = strcmp(a->server.listen.v[i], b->server.listen.v[i]) == 0;
    if (!same)
        return "[server] listen";
#define DIFF(m) ((a->m == NULL) != (b->m == NULL) || (a->m && strcmp(a->m, b->m) != 0))
    if (DIFF(server.control))
        return "[server] control";
    if (DIFF(server.user))
        return "[server] user";
    if (DIFF(stats.prometheus))
        return "[stats] prometheus";
#undef DIFF
    return NULL;
}

static int reload(void *arg, char *err, size_t errlen)
{
    struct daemon *d = arg;
    struct config *cfg = config_load(d->config_path, err, errlen);
    const char *fixed;

    if (!cfg) {
        stats.reload_failures++;
        log_err("reload refused, the running configuration stays: %s", err);
        return -1;
    }
    fixed = restart_only(policy_config(d->policy), cfg);
    if (policy_reload(d->policy, cfg, err, errlen) != 0) {
        config_free(cfg);
        stats.reload_failures++;
        log_err("reload refused, the running configuration stays: %s", err);
        return -1;
    }
    apply_logging(cfg);
    stats.reloads++;
    if (fixed)
        log_warn("reload: a change of %s takes effect only after a restart", fixed);
    log_info("reloaded %s", d->config_path);
    return 0;
}

/* ---- shutdown ---- */

static void close_daemon_handles(struct daemon *d)
{
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
    uv_close((uv_handle_t *)&d->shutdown_timer, NULL);
}

static void drained(void *arg)
{
    struct daemon *d = arg;
    log_info("all connections closed; exiting");
    uv_timer_stop(&d->shutdown_timer);
    server_free(d->server);
    d->server = NULL;
    policy_free(d->policy);
    d->policy = NULL;
    close_daemon_handles(d);
    log_detach();           /* what is buffered is written before the loop ends */
}

static void shutdown_expired(uv_timer_t *t)
{
    struct daemon *d = t->data;
    log_warn("shutdown_timeout reached; closing the remaining connections");
    server_abort(d->server);
}

static void begin_shutdown(struct daemon *d, const char *why)
{
    if (d->stopping) {
        log_warn("%s again: closing every connection now", why);
        server_abort(d->server);
        return;
    }
    d->stopping = 1;
    log_info("%s: stopping; answering the requests in flight", why);
    control_free(d->control);
    d->control = NULL;
    metrics_free(d->metrics);
    d->metrics = NULL;
    uv_signal_stop(&d->sighup);
    uv_timer_start(&d->shutdown_timer, shutdown_expired,
                   policy_config(d->policy)->server.shutdown_timeout_ms, 0);
    server_shutdown(d->server, drained, d);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    char err[512];

    if (signum == SIGHUP) {
        log_info("SIGHUP: reloading %s", d->config_path);
        reload(d, err, sizeof(err));
        return;
    }
    begin_shutdown(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
    log_flush();            /* the next signal may be SIGKILL */
}

static void watch_signal(struct daemon *d, uv_signal_t *h, int signum)
{
    uv_signal_init(d->loop, h);
    h->data = d;
    uv_signal_start(h, on_signal, signum);
}

/* ---- privileges and limits ---- */

/* root_refused - checked before binding anything: root without a user to
 * become is refused unless allow_root says so. */
static int root_refused(const struct config *cfg)
{
    if (geteuid() != 0 || cfg->server.user)
        return 0;
    if (cfg->server.allow_root) {
        log_warn("running as root ([server] allow_root = yes)");
        return 0;
    }
    log_err("refusing to serve as root: set [server] user (or allow_root = yes)");
    return 1;
}

static int drop_privileges(const struct config *cfg)
{
    if (geteuid() != 0 || !cfg->server.user)
        return 0;
    errno = 0;
    struct passwd *pw = getpwnam(cfg->server.user);
    if (!pw) {
        log_err("[server] user: no such user '%s'", cfg->server.user);
        return -1;
    }
    /* sockets made as root must stay usable (and removable) by the user */
    if (cfg->server.control && strncmp(cfg->server.control, "unix:", 5) == 0 &&
        chown(cfg->server.control + 5, pw->pw_uid, pw->pw_gid) != 0)
        log_warn("chown %s: %s", cfg->server.control + 5, strerror(errno));
    for (size_t i = 0; i < cfg->server.listen.n; i++) {
        const char *l = cfg->server.listen.v[i];
        if (strncmp(l, "unix:", 5) == 0 && chown(l + 5, pw->pw_uid, pw->pw_gid) != 0)
            log_warn("chown %s: %s", l + 5, strerror(errno));
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        log_err("cannot become %s: %s", cfg->server.user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) {
        log_err("privilege drop failed: could become root again");
        return -1;
    }
    log_info("running as %s (uid %u, gid %u)", pw->pw_name, (unsigned)pw->pw_uid,
             (unsigned)pw->pw_gid);
    return 0;
}

/* Thousands of connections need thousands of descriptors. */
static void raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < cfg->server.max_connections + 64)
        log_warn("file descriptor limit %llu is below [server] max_connections %u; "
                 "connections past the limit will fail to be accepted",
                 (unsigned long long)rl.rlim_cur, cfg->server.max_connections);
}

/* ---- -T ---- */

static int test_directory(struct config *cfg, const char *address)
{
    char err[512], msg[1024], probe[ADDR_MAX];
    struct address a, bare;
    uv_loop_t *loop = uv_default_loop();
    struct directory *dir = directory_new(loop, cfg, err, sizeof(err));
    int rc;

    if (!dir) {
        fprintf(stderr, "policyd: %s\n", err);
        return 1;
    }
    if (!address) {
        snprintf(probe, sizeof(probe), "postmaster@%s", cfg->directory.domains.v[0]);
        address = probe;
    }
    if (addr_normalize(address, cfg->directory.recipient_delimiter,
                       cfg->directory.ignore_case, &a) != ADDR_OK) {
        fprintf(stderr, "policyd: -T %s: not an email address\n", address);
        directory_free(dir);
        return 1;
    }
    rc = dir->ops->check(dir, &a, msg, sizeof(msg));
    printf("%s\n", msg);
    /* the request path asks the stripped form when the full one is not
     * found: show both, as the daemon would see them */
    if (rc == 0 && addr_strip(&a, &bare)) {
        rc = dir->ops->check(dir, &bare, msg, sizeof(msg));
        printf("without its extension: %s\n", msg);
    }
    directory_free(dir);
    uv_run(loop, UV_RUN_DEFAULT);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_CONFIG, *test_addr = NULL;
    int check = 0, test = 0, opt;
    char err[1024];
    struct config *cfg;
    struct daemon d;

    while ((opt = getopt(argc, argv, "c:tTVh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check = 1;
            break;
        case 'T':
            test = 1;
            break;
        case 'V':
            printf("policyd %s\n", POLICYD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (test && optind < argc)
        test_addr = argv[optind++];
    if (optind < argc) {
        usage(stderr);
        return 2;
    }

    cfg = config_load(path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "policyd: %s\n", err);
        return 1;
    }
    if (check) {
        printf("policyd: %s: configuration OK\n", path);
        config_free(cfg);
        return 0;
    }
    apply_logging(cfg);
    if (test) {
        int rc = test_directory(cfg, test_addr);
        config_free(cfg);
        return rc;
    }

    if (root_refused(cfg)) {
        config_free(cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(cfg);
    stats_init();
    memset(&d, 0, sizeof(d));
    d.loop = uv_default_loop();
    d.config_path = path;
    log_attach(d.loop);     /* from here on, log lines are written once per turn */
    /* before any socket exists: a signal sent as soon as we listen must
     * find its handler, not the default action */
    watch_signal(&d, &d.sigterm, SIGTERM);
    watch_signal(&d, &d.sigint, SIGINT);
    watch_signal(&d, &d.sighup, SIGHUP);
    uv_timer_init(d.loop, &d.shutdown_timer);
    d.shutdown_timer.data = &d;
    d.policy = policy_new(d.loop, cfg, err, sizeof(err));
    if (!d.policy) {
        log_err("%s", err);
        config_free(cfg);
        goto fail;
    }
    cfg = NULL;     /* policy owns it */
    const struct config *c = policy_config(d.policy);
    if (c->server.control) {
        d.control = control_new(d.loop, c->server.control + 5, c->server.control_mode,
                                d.policy, reload, &d, err, sizeof(err));
        if (!d.control) {
            log_err("control socket: %s", err);
            goto fail;
        }
    }
    if (c->stats.prometheus) {
        d.metrics = metrics_new(d.loop, c->stats.prometheus, d.policy, err, sizeof(err));
        if (!d.metrics) {
            log_err("prometheus: %s", err);
            goto fail;
        }
    }
    /* the policy listeners last: once they accept, everything is ready */
    d.server = server_new(d.loop, d.policy, err, sizeof(err));
    if (!d.server) {
        log_err("%s", err);
        goto fail;
    }
    if (drop_privileges(c) != 0)
        goto fail;
    log_info("policyd %s started (%s backend, %s store)", POLICYD_VERSION,
             c->directory.backend,
             c->redis.address || c->redis.sentinels.n ? "redis" : "memory");

    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_loop_close(d.loop);
    return 0;

fail:
    control_free(d.control);
    metrics_free(d.metrics);
    server_free(d.server);
    policy_free(d.policy);
    close_daemon_handles(&d);
    log_detach();
    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_loop_close(d.loop);
    return 1;
}
