/*
 * NAME
 *	config_check 3 - the checks between keys, after the whole file
 *
 * DESCRIPTION
 *	config_cross_check() runs once every line has been read: required
 *	pairs, exclusive pairs, the bind password file, and the limits one
 *	key puts on another (tarpit_max against Postfix's policy time-out,
 *	with the Redis and directory time-outs that come before the delay).
 *	Each message names the line where the key was set, or line 0 when it
 *	kept its default.  config_digest() fingerprints the settings that
 *	decide what the directory answers, for the cache keys.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config_priv.h"
#include "log.h"
#include "util.h"

/* ---- after parsing ---- */

static int config_read_pwfile(struct config_ctx *c)
{
    const struct key_def *k = config_key_find("ldap", "bind_pw_file");
    unsigned line = c->lines[k - config_keys];
    char q[CONFIG_QUOTE_MAX * 4 + 8];
    char buf[CONFIG_PWFILE_MAX + 2];
    size_t n;
    FILE *f;

    if (!(f = fopen(c->bind_pw_file, "r")))
        return config_fail(c, line, k, "cannot open %s: %s",
                           config_quote(c->bind_pw_file, q, sizeof(q)),
                           strerror(errno));
    n = fread(buf, 1, sizeof(buf) - 1, f);
    if (ferror(f)) {
        int e = errno;

        fclose(f);
        return config_fail(c, line, k, "cannot read %s: %s",
                           config_quote(c->bind_pw_file, q, sizeof(q)), strerror(e));
    }
    fclose(f);
    if (n > CONFIG_PWFILE_MAX)
        return config_fail(c, line, k, "%s is longer than %d bytes",
                           config_quote(c->bind_pw_file, q, sizeof(q)),
                           CONFIG_PWFILE_MAX);
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    if (memchr(buf, 0, n) || memchr(buf, '\n', n))
        return config_fail(c, line, k, "%s must hold the password on one line",
                           config_quote(c->bind_pw_file, q, sizeof(q)));
    if (n == 0)
        return config_fail(c, line, k, "%s is empty",
                           config_quote(c->bind_pw_file, q, sizeof(q)));
    free(c->cfg->ldap.bind_pw);
    c->cfg->ldap.bind_pw = xstrdup(buf);
    memset(buf, 0, sizeof(buf));
    return 0;
}

#define FAIL_AT(s, n, ...) config_fail(c, config_key_line(c, s, n), config_key_find(s, n), __VA_ARGS__)

int config_cross_check(struct config_ctx *c)
{
    struct config *cfg = c->cfg;
    char a[32], b[32];
    unsigned l1, l2;

    if (config_key_line(c, "server", "listen") && cfg->server.listen.n == 0)
        return FAIL_AT("server", "listen", "no address given");
    if (cfg->server.listen.n == 0)
        config_strlist_add(&cfg->server.listen, "inet:127.0.0.1:10040");
    if (cfg->server.request_limit < cfg->server.line_limit)
        return FAIL_AT("server", "request_limit", "%zu is below line_limit (%zu)",
                       cfg->server.request_limit, cfg->server.line_limit);

    if (cfg->directory.domains.n == 0)
        return FAIL_AT("directory", "domains", "at least one domain is required");
    if (strcmp(cfg->directory.backend, "file") == 0 && !cfg->directory.file)
        return config_fail(c, config_key_line(c, "directory", "backend"),
                           config_key_find("directory", "file"),
                           "required with backend = file");
    if (strcmp(cfg->directory.backend, "ldap") == 0) {
        if (cfg->ldap.uri.n == 0)
            return config_fail(c, config_key_line(c, "directory", "backend"),
                               config_key_find("ldap", "uri"), "required with backend = ldap");
        if (!cfg->ldap.base)
            return config_fail(c, config_key_line(c, "directory", "backend"),
                               config_key_find("ldap", "base"), "required with backend = ldap");
    }

    if (c->bind_pw_file && cfg->ldap.bind_pw)
        return FAIL_AT("ldap", "bind_pw_file", "bind_pw and bind_pw_file are "
                       "mutually exclusive");
    if (c->bind_pw_file && config_read_pwfile(c) < 0)
        return -1;
    if (cfg->ldap.bind_pw && !cfg->ldap.bind_dn)
        return FAIL_AT("ldap", "bind_pw", "a password without bind_dn");
    if (cfg->ldap.bind_dn && !cfg->ldap.bind_pw)
        /* a DN with an empty password is an unauthenticated bind: it
         * "succeeds" without checking anything (RFC 4513 5.1.2) */
        return FAIL_AT("ldap", "bind_dn", "needs bind_pw or bind_pw_file");
    if (cfg->ldap.starttls)
        for (size_t i = 0; i < cfg->ldap.uri.n; i++)
            if (strncasecmp(cfg->ldap.uri.v[i], "ldaps://", 8) == 0)
                return FAIL_AT("ldap", "starttls", "cannot be used with an "
                               "ldaps:// URI");
    if (cfg->ldap.tls_ca_file && access(cfg->ldap.tls_ca_file, R_OK) < 0) {
        char q[CONFIG_QUOTE_MAX * 4 + 8];

        return FAIL_AT("ldap", "tls_ca_file", "cannot read %s: %s",
                       config_quote(cfg->ldap.tls_ca_file, q, sizeof(q)),
                       strerror(errno));
    }

    if (cfg->redis.address && cfg->redis.sentinels.n)
        return FAIL_AT("redis", "sentinels", "address and sentinels are mutually "
                       "exclusive");
    if (cfg->redis.sentinels.n && !cfg->redis.master_name)
        return FAIL_AT("redis", "master_name", "required with sentinels");
    if (cfg->redis.master_name && !cfg->redis.sentinels.n)
        return FAIL_AT("redis", "master_name", "only used with sentinels");

    if (cfg->redis.prefix && strlen(cfg->redis.prefix) > CONFIG_PREFIX_MAX)
        return FAIL_AT("redis", "prefix", "longer than %d bytes", CONFIG_PREFIX_MAX);

    if (cfg->harvest.enabled) {
        /* the worst case before the delay starts: the Redis read, then the
         * directory, each up to its own timeout */
        uint64_t before = 0, worst;
        char d[32];

        if (cfg->redis.address || cfg->redis.sentinels.n)
            before += cfg->redis.timeout_ms;
        if (strcmp(cfg->directory.backend, "ldap") == 0)
            before += cfg->ldap.timeout_ms;
        worst = cfg->harvest.tarpit_max_ms + before;
        if (worst >= cfg->harvest.postfix_timeout_ms) {
            l1 = config_key_line(c, "harvest", "tarpit_max");
            l2 = config_key_line(c, "harvest", "postfix_timeout");
            if (before)
                snprintf(d, sizeof(d), " plus %s", config_secs(before, b, sizeof(b)));
            else
                d[0] = '\0';
            return config_fail(c, l1 ? l1 : l2, config_key_find("harvest", "tarpit_max"),
                               "%s%s is not below Postfix's "
                               "smtpd_policy_service_timeout (%s); Postfix would "
                               "give up first%s",
                               config_secs(cfg->harvest.tarpit_max_ms, a, sizeof(a)), d,
                               config_secs(cfg->harvest.postfix_timeout_ms, b,
                                           sizeof(b)),
                               before ? " (the plus: [redis] timeout and [ldap] "
                               "timeout, spent before the delay)" : "");
        }
        /* [siege] action = tarpit: the siege's delay comes after the same
         * reads as the harvest's */
        if (cfg->siege.action == SIEGE_ACT_TARPIT
            && cfg->siege.delay_ms + before >= cfg->harvest.postfix_timeout_ms)
            return FAIL_AT("siege", "delay", "%s is not below Postfix's "
                           "smtpd_policy_service_timeout (%s, [harvest] "
                           "postfix_timeout) with the reads before it",
                           config_secs(cfg->siege.delay_ms, a, sizeof(a)),
                           config_secs(cfg->harvest.postfix_timeout_ms, b, sizeof(b)));
        if (cfg->harvest.tarpit_delay_ms > cfg->harvest.tarpit_max_ms)
            return FAIL_AT("harvest", "tarpit_delay", "%s is above tarpit_max (%s)",
                           config_secs(cfg->harvest.tarpit_delay_ms, a, sizeof(a)),
                           config_secs(cfg->harvest.tarpit_max_ms, b, sizeof(b)));
    }
    if (cfg->siege.retry_min_ms >= cfg->siege.retry_max_ms)
        return FAIL_AT("siege", "retry_min", "%s is not below retry_max (%s)",
                       config_secs(cfg->siege.retry_min_ms, a, sizeof(a)),
                       config_secs(cfg->siege.retry_max_ms, b, sizeof(b)));
    return 0;
}

#undef FAIL_AT

/* ---- digest ---- */

static void fnv_add(uint64_t *h, const char *s)
{
    /* NULL and "" differ; a 0 byte ends every field so fields cannot run
     * into each other */
    if (!s) {
        *h ^= 0xff;
        *h *= 0x100000001b3ULL;
        s = "";
    }
    for (;; s++) {
        *h ^= (unsigned char) *s;
        *h *= 0x100000001b3ULL;
        if (!*s)
            break;
    }
}

void config_digest(struct config *cfg)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    char num[24];

    fnv_add(&h, cfg->directory.backend);
    fnv_add(&h, cfg->directory.file);
    snprintf(num, sizeof(num), "%zu", cfg->ldap.uri.n);
    fnv_add(&h, num);
    for (size_t i = 0; i < cfg->ldap.uri.n; i++)
        fnv_add(&h, cfg->ldap.uri.v[i]);
    fnv_add(&h, cfg->ldap.base);
    snprintf(num, sizeof(num), "%d", (int) cfg->ldap.scope);
    fnv_add(&h, num);
    fnv_add(&h, cfg->ldap.filter);
    fnv_add(&h, cfg->directory.recipient_delimiter);
    fnv_add(&h, cfg->directory.ignore_case ? "1" : "0");
    snprintf(num, sizeof(num), "%zu", cfg->directory.domains.n);
    fnv_add(&h, num);
    for (size_t i = 0; i < cfg->directory.domains.n; i++)
        fnv_add(&h, cfg->directory.domains.v[i]);
    snprintf(cfg->dir_digest, sizeof(cfg->dir_digest), "%016llx",
             (unsigned long long) h);
}

const char *config_directory_digest(const struct config *cfg)
{
    return cfg->dir_digest;
}

