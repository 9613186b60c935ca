/*
 * NAME
 *	config_keys 3 - every policyd.conf key: its checker, range and default
 *
 * DESCRIPTION
 *	The keys[] table says, once per key, its section, type, range and
 *	value checker; config_defaults() gives every default.  Adding a key
 *	means a line in each, a field in struct config, and its man page
 *	entry.  The loader (config.c) and the checks between keys
 *	(config_check.c) use the table through config_priv.h.
 */

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/ldap_filter.h"
#include "address.h"
#include "config.h"
#include "config_priv.h"
#include "log.h"
#include "util.h"

/* ---- value checkers ---- */

static int check_port(const char *p, char *why, size_t whylen)
{
    unsigned long long port;

    if (util_parse_uint(p, 65535, &port) < 0 || port == 0) {
        snprintf(why, whylen, "port must be 1..65535");
        return -1;
    }
    return 0;
}

/* check_hostport - "host:port" or "[v6]:port"; host without blanks. */
static int check_hostport(char *v, char *why, size_t whylen)
{
    const char *colon;

    if (v[0] == '[') {
        const char *end = strchr(v, ']');

        if (!end || end == v + 1 || end[1] != ':') {
            snprintf(why, whylen, "expected [IPV6]:PORT");
            return -1;
        }
        for (const char *p = v + 1; p < end; p++)
            if (!isxdigit((unsigned char) *p) && *p != ':' && *p != '.') {
                snprintf(why, whylen, "bad IPv6 address in brackets");
                return -1;
            }
        return check_port(end + 2, why, whylen);
    }
    colon = strrchr(v, ':');
    if (!colon || colon == v) {
        snprintf(why, whylen, "expected HOST:PORT");
        return -1;
    }
    for (const char *p = v; p < colon; p++)
        if (!isalnum((unsigned char) *p) && *p != '.' && *p != '-' && *p != '_') {
            snprintf(why, whylen, "bad host name (an IPv6 address needs [brackets])");
            return -1;
        }
    return check_port(colon + 1, why, whylen);
}

static int check_unix(const char *v, char *why, size_t whylen)
{
    const char *path = v + 5;

    if (path[0] != '/') {
        snprintf(why, whylen, "unix socket path must be absolute");
        return -1;
    }
    if (strlen(path) > CONFIG_UNIX_PATH_MAX) {
        snprintf(why, whylen, "unix socket path longer than %d bytes",
                 CONFIG_UNIX_PATH_MAX);
        return -1;
    }
    return 0;
}

/* check_listen - inet:HOST:PORT, inet:[V6]:PORT or unix:/path */
static int check_listen(char *v, char *why, size_t whylen)
{
    if (strncmp(v, "inet:", 5) == 0)
        return check_hostport(v + 5, why, whylen);
    if (strncmp(v, "unix:", 5) == 0)
        return check_unix(v, why, whylen);
    snprintf(why, whylen, "expected inet:HOST:PORT, inet:[IPV6]:PORT or unix:/PATH");
    return -1;
}

static int check_control(char *v, char *why, size_t whylen)
{
    if (strncmp(v, "unix:", 5) != 0) {
        snprintf(why, whylen, "expected unix:/PATH or none");
        return -1;
    }
    return check_unix(v, why, whylen);
}

static int check_prometheus(char *v, char *why, size_t whylen)
{
    if (strncmp(v, "inet:", 5) != 0) {
        snprintf(why, whylen, "expected inet:HOST:PORT or none");
        return -1;
    }
    return check_hostport(v + 5, why, whylen);
}

static int check_redis_addr(char *v, char *why, size_t whylen)
{
    if (strncmp(v, "unix:", 5) == 0)
        return check_unix(v, why, whylen);
    return check_hostport(v, why, whylen);
}

/* check_token - a name without blanks or control characters. */
static int check_token(char *v, char *why, size_t whylen)
{
    for (const char *p = v; *p; p++)
        if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f) {
            snprintf(why, whylen, "must be printable ASCII without blanks");
            return -1;
        }
    return 0;
}

static int check_user(char *v, char *why, size_t whylen)
{
    if (strlen(v) > 32) {
        snprintf(why, whylen, "user name longer than 32 bytes");
        return -1;
    }
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char) *p) && *p != '_' && *p != '-' && *p != '.') {
            snprintf(why, whylen, "bad user name");
            return -1;
        }
    return 0;
}

static int check_printable(char *v, char *why, size_t whylen)
{
    if (!config_printable(v)) {
        snprintf(why, whylen, "must be printable ASCII");
        return -1;
    }
    return 0;
}

static int check_backend(char *v, char *why, size_t whylen)
{
    if (strcmp(v, "file") != 0 && strcmp(v, "ldap") != 0) {
        snprintf(why, whylen, "expected file or ldap");
        return -1;
    }
    return 0;
}

static int check_delimiter(char *v, char *why, size_t whylen)
{
    if (strlen(v) > 16) {
        snprintf(why, whylen, "more than 16 characters");
        return -1;
    }
    for (const char *p = v; *p; p++)
        if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f || *p == '@'
            || *p == '"') {
            snprintf(why, whylen, "printable characters only, not '@' or '\"'");
            return -1;
        }
    return 0;
}

/* check_domain - lowercase, drop one trailing dot, then letters, digits,
 * '-', '_' in dot-separated non-empty labels. */
static int check_domain(char *v, char *why, size_t whylen)
{
    size_t n = strlen(v), label = 0;
    int bad = 0;

    for (char *p = v; *p; p++)
        *p = (char) tolower((unsigned char) *p);
    if (n > 0 && v[n - 1] == '.')
        v[--n] = 0;
    if (n == 0 || n > 253) {
        snprintf(why, whylen, "not a domain name");
        return -1;
    }
    for (const char *p = v; *p; p++) {
        if (*p == '.') {
            if (label == 0)
                bad = 1;
            label = 0;
            continue;
        }
        if ((!isalnum((unsigned char) *p) && *p != '-' && *p != '_') || ++label > 63)
            bad = 1;
    }
    if (bad || label == 0) {
        snprintf(why, whylen, "not a domain name");
        return -1;
    }
    return 0;
}

static int check_cidr(char *v, char *why, size_t whylen)
{
    struct cidr c;

    if (addr_cidr_parse(v, &c) != 0) {
        snprintf(why, whylen, "not an address or ADDRESS/PREFIX");
        return -1;
    }
    return 0;
}

/* check_trap - "local@domain" or "local@" (that local part in every
 * domain of [directory] domains); lowercased like the recipients. */
static int check_trap(char *v, char *why, size_t whylen)
{
    char *at = strchr(v, '@');

    if (!at || at == v || strchr(at + 1, '@') || strlen(v) >= ADDR_MAX) {
        snprintf(why, whylen, "want local@domain or local@");
        return -1;
    }
    for (char *p = v; *p; p++) {
        if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f) {
            snprintf(why, whylen, "blanks or control characters");
            return -1;
        }
        *p = (char) tolower((unsigned char) *p);
    }
    return 0;
}

static int check_uri(char *v, char *why, size_t whylen)
{
    if (strncasecmp(v, "ldap://", 7) != 0 && strncasecmp(v, "ldaps://", 8) != 0
        && strncasecmp(v, "ldapi://", 8) != 0) {
        snprintf(why, whylen, "expected ldap://, ldaps:// or ldapi:// URI");
        return -1;
    }
    return check_token(v, why, whylen);
}

static int check_filter(char *v, char *why, size_t whylen)
{
    int r;

    if (check_printable(v, why, whylen) < 0)
        return -1;
    if ((r = ldap_filter_check(v)) < 0) {
        snprintf(why, whylen, "%s", ldap_filter_strerror(r));
        return -1;
    }
    return 0;
}

/* check_action - a Postfix access(5) action: "4xx text", "5xx text", or a
 * word of capital letters and '_' (DUNNO, DEFER_IF_PERMIT, REJECT text, ...) */
static int check_action(char *v, char *why, size_t whylen)
{
    size_t w = 0;

    if (!*v) {
        snprintf(why, whylen, "empty action");
        return -1;
    }
    if (!config_printable(v)) {
        snprintf(why, whylen, "must be printable ASCII on one line");
        return -1;
    }
    while (v[w] && v[w] != ' ')
        w++;
    if (w == 3 && (v[0] == '4' || v[0] == '5') && isdigit((unsigned char) v[1])
        && isdigit((unsigned char) v[2])) {
        if (v[3] != ' ' || v[4] == 0 || v[4] == ' ') {
            snprintf(why, whylen, "a %c%c%c code must be followed by a space and text",
                     v[0], v[1], v[2]);
            return -1;
        }
        return 0;
    }
    for (size_t i = 0; i < w; i++)
        if (!isupper((unsigned char) v[i]) && v[i] != '_') {
            snprintf(why, whylen, "expected a 4xx/5xx code and text, or an "
                     "access(5) action such as DUNNO, REJECT or DEFER");
            return -1;
        }
    return 0;
}

/* ---- enum setters ---- */

static const char *const log_names[] = { "stderr", "syslog", NULL };
static const char *const level_names[] = { "debug", "info", "warning", "error", NULL };
static const char *const scope_names[] = { "base", "one", "sub", NULL };

static void set_log(struct config *cfg, int v)
{
    cfg->server.log = v ? LOG_TO_SYSLOG : LOG_TO_STDERR;
}

static void set_level(struct config *cfg, int v)
{
    static const int lv[] = { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERR };

    cfg->server.log_level = lv[v];
}

static const char *const referral_names[] = { "ignore", "tempfail", NULL };

static void set_referrals(struct config *cfg, int v)
{
    cfg->ldap.referrals = (enum ldap_referrals_cfg) v;
}

static const char *const siege_action_names[] = { "defer", "tarpit", "off", NULL };

static void set_siege_action(struct config *cfg, int v)
{
    cfg->siege.action = (enum siege_action_cfg) v;
}

static void set_scope(struct config *cfg, int v)
{
    cfg->ldap.scope = v == 0 ? SCOPE_BASE : v == 1 ? SCOPE_ONE : SCOPE_SUB;
}

/* ---- the keys ---- */

#define OFF(f) offsetof(struct config, f)
#define SEC 1000ULL
#define STR(s, n, f, fl, chk) { s, n, K_STR, OFF(f), 0, 0, fl, chk, NULL, NULL }
#define LIST(s, n, f, chk) { s, n, K_LIST, OFF(f), 0, 0, 0, chk, NULL, NULL }
#define NUM(s, n, t, f, lo, hi) { s, n, t, OFF(f), lo, hi, 0, NULL, NULL, NULL }
#define BOOL(s, n, f) { s, n, K_BOOL, OFF(f), 0, 0, 0, NULL, NULL, NULL }
#define ENUM(s, n, names, set) { s, n, K_ENUM, 0, 0, 0, 0, NULL, names, set }

const struct key_def config_keys[] = {
    LIST("server", "listen", server.listen, check_listen),
    STR("server", "control", server.control, F_EMPTY_NULL | F_NONE_NULL, check_control),
    NUM("server", "socket_mode", K_MODE, server.socket_mode, 0, 0777),
    NUM("server", "control_mode", K_MODE, server.control_mode, 0, 0777),
    NUM("server", "max_connections", K_UINT, server.max_connections, 1, 1000000),
    NUM("server", "idle_timeout", K_DUR, server.idle_timeout_ms, 1, CONFIG_DUR_DAY),
    NUM("server", "shutdown_timeout", K_DUR, server.shutdown_timeout_ms, 0, 3600 * SEC),
    STR("server", "user", server.user, F_EMPTY_NULL | F_NONE_NULL, check_user),
    BOOL("server", "allow_root", server.allow_root),
    NUM("server", "line_limit", K_SIZE, server.line_limit, 256, 1024 * 1024),
    NUM("server", "attr_limit", K_SIZE, server.attr_limit, 64, 100000),
    NUM("server", "request_limit", K_SIZE, server.request_limit, 1024, 16 * 1024 * 1024),
    ENUM("server", "log", log_names, set_log),
    ENUM("server", "log_level", level_names, set_level),
    BOOL("server", "log_decisions", server.log_decisions),

    STR("directory", "backend", directory.backend, 0, check_backend),
    STR("directory", "file", directory.file, F_EMPTY_NULL, check_printable),
    LIST("directory", "domains", directory.domains, check_domain),
    STR("directory", "recipient_delimiter", directory.recipient_delimiter, 0,
        check_delimiter),
    BOOL("directory", "ignore_case", directory.ignore_case),

    STR("actions", "unknown", actions.unknown, 0, check_action),
    STR("actions", "tempfail", actions.tempfail, 0, check_action),
    STR("actions", "blocked", actions.blocked, 0, check_action),
    STR("actions", "siege", actions.siege, 0, check_action),
    BOOL("actions", "dry_run", actions.dry_run),

    LIST("ldap", "uri", ldap.uri, check_uri),
    STR("ldap", "bind_dn", ldap.bind_dn, F_EMPTY_NULL, check_printable),
    STR("ldap", "bind_pw", ldap.bind_pw, F_EMPTY_NULL | F_SECRET, NULL),
    { "ldap", "bind_pw_file", K_PWFILE, 0, 0, 0, 0, NULL, NULL, NULL },
    STR("ldap", "base", ldap.base, F_EMPTY_NULL, check_printable),
    ENUM("ldap", "scope", scope_names, set_scope),
    STR("ldap", "filter", ldap.filter, 0, check_filter),
    NUM("ldap", "timeout", K_DUR, ldap.timeout_ms, 1, 300 * SEC),
    NUM("ldap", "connections", K_UINT, ldap.connections, 1, 64),
    NUM("ldap", "max_inflight", K_UINT, ldap.max_inflight, 1, 1024),
    BOOL("ldap", "starttls", ldap.starttls),
    STR("ldap", "tls_ca_file", ldap.tls_ca_file, F_EMPTY_NULL, check_printable),
    BOOL("ldap", "fail_open", ldap.fail_open),
    ENUM("ldap", "referrals", referral_names, set_referrals),

    STR("redis", "address", redis.address, F_EMPTY_NULL | F_NONE_NULL, check_redis_addr),
    STR("redis", "password", redis.password, F_EMPTY_NULL | F_SECRET, NULL),
    NUM("redis", "db", K_UINT, redis.db, 0, 65535),
    STR("redis", "prefix", redis.prefix, 0, check_token),
    NUM("redis", "timeout", K_DUR, redis.timeout_ms, 1, 60 * SEC),
    NUM("redis", "connect_timeout", K_DUR, redis.connect_timeout_ms, 1, 60 * SEC),
    LIST("redis", "sentinels", redis.sentinels, check_hostport),
    STR("redis", "master_name", redis.master_name, F_EMPTY_NULL, check_token),

    NUM("cache", "positive_ttl", K_DUR, cache.positive_ttl_ms, 0, 30 * CONFIG_DUR_DAY),
    NUM("cache", "negative_ttl", K_DUR, cache.negative_ttl_ms, 0, 30 * CONFIG_DUR_DAY),
    NUM("cache", "local_size", K_SIZE, cache.local_size, 0, 10000000),
    NUM("cache", "local_ttl", K_DUR, cache.local_ttl_ms, 0, CONFIG_DUR_DAY),

    BOOL("harvest", "enabled", harvest.enabled),
    NUM("harvest", "window", K_DUR, harvest.window_ms, 1, 30 * CONFIG_DUR_DAY),
    BOOL("harvest", "dry_run", harvest.dry_run),
    NUM("harvest", "tarpit_after", K_UINT, harvest.tarpit_after, 0, 1000000),
    NUM("harvest", "tarpit_share", K_PCT, harvest.tarpit_share, 0, 100),
    NUM("harvest", "tarpit_delay", K_DUR, harvest.tarpit_delay_ms, 0, 3600 * SEC),
    NUM("harvest", "tarpit_max", K_DUR, harvest.tarpit_max_ms, 0, 3600 * SEC),
    NUM("harvest", "block_after", K_UINT, harvest.block_after, 0, 1000000),
    NUM("harvest", "block_share", K_PCT, harvest.block_share, 0, 100),
    NUM("harvest", "block_ceiling", K_UINT, harvest.block_ceiling, 0, 1000000),
    NUM("harvest", "block_time", K_DUR, harvest.block_time_ms, 1, 30 * CONFIG_DUR_DAY),
    NUM("harvest", "wide_tarpit_after", K_UINT, harvest.wide_tarpit_after, 0, 1000000),
    NUM("harvest", "wide_block_after", K_UINT, harvest.wide_block_after, 0, 1000000),
    NUM("harvest", "wide_block_ceiling", K_UINT, harvest.wide_block_ceiling, 0, 1000000),
    LIST("harvest", "whitelist", harvest.whitelist, check_cidr),
    LIST("harvest", "traps", harvest.traps, check_trap),
    BOOL("harvest", "exempt_sasl", harvest.exempt_sasl),
    NUM("harvest", "ipv4_prefix", K_UINT, harvest.ipv4_prefix, 0, 32),
    NUM("harvest", "ipv6_prefix", K_UINT, harvest.ipv6_prefix, 0, 128),
    NUM("harvest", "ipv4_wide_prefix", K_UINT, harvest.ipv4_wide_prefix, 0, 32),
    NUM("harvest", "ipv6_wide_prefix", K_UINT, harvest.ipv6_wide_prefix, 0, 128),
    NUM("harvest", "postfix_timeout", K_DUR, harvest.postfix_timeout_ms, 1, 3600 * SEC),
    NUM("harvest", "max_tracked", K_SIZE, harvest.max_tracked, 1, 10000000),

    ENUM("siege", "action", siege_action_names, set_siege_action),
    NUM("siege", "threshold", K_UINT, siege.threshold, 1, 100000000),
    NUM("siege", "baseline_factor", K_UINT, siege.baseline_factor, 0, 1000),
    NUM("siege", "low_mark", K_PCT, siege.low_mark, 1, 100),
    NUM("siege", "window", K_DUR, siege.window_ms, 6 * SEC, 3600 * SEC),
    NUM("siege", "cooldown", K_DUR, siege.cooldown_ms, 0, CONFIG_DUR_DAY),
    NUM("siege", "baseline_window", K_DUR, siege.baseline_window_ms, 0,
        30 * CONFIG_DUR_DAY),
    NUM("siege", "retry_min", K_DUR, siege.retry_min_ms, 0, CONFIG_DUR_DAY),
    NUM("siege", "retry_max", K_DUR, siege.retry_max_ms, 1, 7 * CONFIG_DUR_DAY),
    NUM("siege", "delay", K_DUR, siege.delay_ms, 0, 3600 * SEC),
    NUM("siege", "established_after", K_UINT, siege.established_after, 1, 1000000),
    NUM("siege", "established_days", K_UINT, siege.established_days, 1, 3650),

    STR("stats", "prometheus", stats.prometheus, F_EMPTY_NULL | F_NONE_NULL,
        check_prometheus),
};

const size_t config_nkeys = sizeof(config_keys) / sizeof(config_keys[0]);
_Static_assert(sizeof(config_keys) / sizeof(config_keys[0]) <= CONFIG_KEYS_MAX,
               "raise CONFIG_KEYS_MAX");

const struct key_def *config_key_find(const char *section, const char *name)
{
    for (size_t i = 0; i < config_nkeys; i++)
        if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

unsigned config_key_line(const struct config_ctx *c, const char *section,
                         const char *name)
{
    const struct key_def *k = config_key_find(section, name);

    return k ? c->lines[k - config_keys] : 0;
}

/* ---- load and free ---- */

struct config *config_defaults(const char *path)
{
    struct config *cfg = xcalloc(1, sizeof(*cfg));

    cfg->path = xstrdup(path);

    cfg->server.socket_mode = 0666;
    cfg->server.control_mode = 0660;
    cfg->server.max_connections = 10000;
    cfg->server.idle_timeout_ms = 600 * SEC;
    cfg->server.shutdown_timeout_ms = 10 * SEC;
    cfg->server.line_limit = 4096;
    cfg->server.attr_limit = 100;
    cfg->server.request_limit = 32768;
    cfg->server.log = LOG_TO_STDERR;
    cfg->server.log_level = LOG_LVL_INFO;
    cfg->server.log_decisions = 1;

    cfg->directory.backend = xstrdup("file");
    cfg->directory.recipient_delimiter = xstrdup("+");
    cfg->directory.ignore_case = 1;

    cfg->actions.unknown = xstrdup("550 5.1.1 User unknown");
    cfg->actions.tempfail =
        xstrdup("451 4.3.0 Directory temporarily unavailable, try again later");
    cfg->actions.blocked = xstrdup("450 4.7.1 Too many invalid recipients, try again later");

    cfg->ldap.scope = SCOPE_SUB;
    cfg->ldap.filter = xstrdup("(mail=%s)");
    cfg->ldap.timeout_ms = 2 * SEC;
    cfg->ldap.connections = 2;
    cfg->ldap.max_inflight = 64;

    cfg->redis.prefix = xstrdup("policyd:");
    cfg->redis.timeout_ms = 500;
    cfg->redis.connect_timeout_ms = 1 * SEC;

    cfg->cache.positive_ttl_ms = 3600 * SEC;
    cfg->cache.negative_ttl_ms = 300 * SEC;
    cfg->cache.local_size = 10000;
    cfg->cache.local_ttl_ms = 30 * SEC;

    cfg->harvest.enabled = 1;
    cfg->harvest.window_ms = 3600 * SEC;
    cfg->harvest.tarpit_after = 5;
    cfg->harvest.tarpit_share = 25;
    cfg->harvest.tarpit_delay_ms = 1 * SEC;
    cfg->harvest.tarpit_max_ms = 30 * SEC;
    cfg->harvest.block_after = 20;
    cfg->harvest.block_share = 40;
    cfg->harvest.block_ceiling = 200;
    cfg->harvest.wide_tarpit_after = 15;
    cfg->harvest.wide_block_after = 60;
    cfg->harvest.wide_block_ceiling = 0;  /* a /24 blocked whatever its share: a weapon */
    cfg->harvest.ipv4_wide_prefix = 24;
    cfg->harvest.ipv6_wide_prefix = 48;
    cfg->harvest.block_time_ms = 3600 * SEC;
    cfg->harvest.exempt_sasl = 1;
    cfg->harvest.ipv4_prefix = 32;
    cfg->harvest.ipv6_prefix = 64;
    cfg->harvest.postfix_timeout_ms = 100 * SEC;
    cfg->harvest.max_tracked = 100000;

    /* A normal domain sees a few unknown recipients a minute from clients
     * it does not know (stale addresses, spam to old lists), bursts of a
     * few dozen; 120 a minute, fleet-wide, is well above that and far below
     * a botnet's pace.  A domain whose usual rate is higher learns it. */
    cfg->actions.siege = xstrdup("450 4.7.1 Service busy, try again later");
    cfg->siege.action = SIEGE_ACT_DEFER;
    cfg->siege.threshold = 120;
    cfg->siege.baseline_factor = 4;
    cfg->siege.low_mark = 50;
    cfg->siege.window_ms = 60 * SEC;
    cfg->siege.cooldown_ms = 600 * SEC;
    cfg->siege.baseline_window_ms = CONFIG_DUR_DAY;
    cfg->siege.retry_min_ms = 300 * SEC;
    cfg->siege.retry_max_ms = 4 * 3600 * SEC;
    cfg->siege.delay_ms = 10 * SEC;
    cfg->siege.established_after = 3;
    cfg->siege.established_days = 35;
    return cfg;
}

