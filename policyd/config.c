/*
 * NAME
 *	config 3 - load and check policyd.conf
 *
 * SYNOPSIS
 *	#include "config.h"
 *
 *	struct config *config_load(path, err, errlen)
 *	void config_free(cfg)
 *	int config_parse_duration(s, ms)
 *	const char *config_directory_digest(cfg)
 *
 * DESCRIPTION
 *	config_load() reads PATH into memory (at most CONFIG_FILE_MAX bytes)
 *	and feeds it line by line to inih.  Every key is described once in
 *	the keys[] table below: its section, type, range and checker.  A
 *	value is converted and checked when its line is seen, so the error
 *	names that line; checks between keys run after the whole file
 *	(config_cross_check) and name the line where the key was set, or
 *	line 0 when it kept its default.
 *
 *	Messages have the form "PATH:LINE: [section] key: reason".  Values
 *	quoted in a message are escaped and cut short.
 *
 * INI DIALECT
 *	What the Debian libinih (r55, built with the header's defaults)
 *	does, and how it is handled here:
 * .IP \(bu
 *	INI_MAX_LINE is 200: longer lines would be split by inih and the
 *	rest parsed as a line of its own.  Our reader refuses a line that
 *	does not fit (its content may be at most 198 bytes), with an error.
 * .IP \(bu
 *	INI_ALLOW_MULTILINE: an indented line after a key continues that
 *	key's value and the handler is called again with the same name.
 *	Our reader tracks inih's state, so the handler knows a continuation
 *	from a repeated key: a list key appends the continuation's items, a
 *	single-valued key refuses it.  A key given twice: the later wins.
 * .IP \(bu
 *	INI_ALLOW_INLINE_COMMENTS with ";": " ;" ends the value.  "#" only
 *	starts a comment at the beginning of a line.
 * .IP \(bu
 *	"key: value" is accepted like "key = value" (inih does that).
 * .IP \(bu
 *	A section with no keys never reaches the handler, so the reader
 *	checks section names itself.
 *
 *	A NUL byte in the file is an error.  No global state: everything
 *	lives in struct config_ctx on the stack of config_load().
 */

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../backends/ldap_filter.h"
#include "address.h"
#include "config.h"
#include "log.h"
#include "util.h"

#define CONFIG_FILE_MAX (1024 * 1024)   /* a config bigger than this is a mistake */
#define CONFIG_LIST_MAX 4096            /* items in one list */
#define CONFIG_PWFILE_MAX 1024          /* bytes in bind_pw_file */
#define CONFIG_QUOTE_MAX 64             /* bytes of a value echoed in a message */
#define CONFIG_UNIX_PATH_MAX 107        /* sizeof(sun_path) - 1 */
#define CONFIG_DUR_DAY 86400000ULL

enum key_type {
    K_STR,          /* char *, copy of the value */
    K_LIST,         /* struct strlist, split on blanks and commas */
    K_UINT,         /* unsigned */
    K_SIZE,         /* size_t */
    K_DUR,          /* uint64_t milliseconds */
    K_BOOL,         /* int */
    K_MODE,         /* unsigned, octal */
    K_ENUM,         /* via the key's setter */
    K_PWFILE,       /* read after parsing; kept in the context */
    K_PCT,          /* unsigned percent, "25" or "25%" */
};

/* K_STR: empty value -> NULL; "none" -> NULL */
#define F_EMPTY_NULL 1
#define F_NONE_NULL 2
#define F_SECRET 4              /* never echo the value in a message */

struct config_ctx;

/* A checker may rewrite v in place (e.g. lowercase it); on failure it
 * writes the reason to why. */
typedef int config_check_fn(char *v, char *why, size_t whylen);
typedef void config_set_enum_fn(struct config *cfg, int val);

struct key_def {
    const char *section;
    const char *name;
    enum key_type type;
    size_t off;                 /* offsetof(struct config, ...) */
    unsigned long long min, max;
    int flags;
    config_check_fn *check;
    const char *const *names;   /* K_ENUM: accepted words, NULL-terminated */
    config_set_enum_fn *set;    /* K_ENUM */
};

struct config_ctx {
    struct config *cfg;
    const char *path;
    char *err;
    size_t errlen;
    int failed;
    unsigned err_line;

    /* reader state */
    const char *buf;
    size_t len;
    size_t pos;
    unsigned lineno;
    int cur_cont;               /* inih will treat this line as a continuation */
    int prev_valid;             /* inih has a previous key name (prev_name) */

    unsigned *lines;            /* per key: line where it was last set, 0 = default */
    char *bind_pw_file;
};

static const char *const sections[] = {
    "server", "directory", "actions", "ldap", "redis", "cache", "harvest",
    "stats", NULL
};

/* ---- small helpers ---- */

/* config_quote - 'value' for a message: escaped, cut at CONFIG_QUOTE_MAX. */
static const char *config_quote(const char *s, char *out, size_t outlen)
{
    size_t o = 0, i;

    if (outlen < 8)
        return "''";
    out[o++] = '\'';
    for (i = 0; s[i] && o + 6 < outlen; i++) {
        unsigned char c = (unsigned char) s[i];

        if (i >= CONFIG_QUOTE_MAX) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c >= 0x7f || c == '\\' || c == '\'') {
            o += (size_t) snprintf(out + o, outlen - o, "\\x%02x", c);
        } else {
            out[o++] = (char) c;
        }
    }
    out[o++] = '\'';
    out[o] = 0;
    return out;
}

/* config_fail - record the first error; always returns -1. */
__attribute__((format(printf, 4, 5)))
static int config_fail(struct config_ctx *c, unsigned line,
                       const struct key_def *k, const char *fmt, ...)
{
    va_list ap;
    size_t n;
    int r;

    if (c->failed)
        return -1;
    c->failed = 1;
    c->err_line = line;
    if (k)
        r = snprintf(c->err, c->errlen, "%s:%u: [%s] %s: ", c->path, line,
                     k->section, k->name);
    else
        r = snprintf(c->err, c->errlen, "%s:%u: ", c->path, line);
    n = r < 0 ? 0 : (size_t) r;
    if (n < c->errlen) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - n, fmt, ap);
        va_end(ap);
    }
    /* names and values from the file reach a terminal or syslog: no
     * control bytes, whatever path they took into the message */
    for (char *p = c->err; *p; p++)
        if ((unsigned char) *p < 0x20 || *p == 0x7f)
            *p = '?';
    return -1;
}

/* config_secs - milliseconds as seconds, "120s", "1.5s". */
static const char *config_secs(uint64_t ms, char *out, size_t outlen)
{
    if (ms % 1000 == 0) {
        snprintf(out, outlen, "%llus", (unsigned long long) (ms / 1000));
    } else {
        char frac[4];
        int i = 2;

        snprintf(frac, sizeof(frac), "%03u", (unsigned) (ms % 1000));
        while (i > 0 && frac[i] == '0')
            frac[i--] = 0;
        snprintf(out, outlen, "%llu.%ss", (unsigned long long) (ms / 1000), frac);
    }
    return out;
}

static int config_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f)
            return 0;
    return 1;
}

static void strlist_clear(struct strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void strlist_add(struct strlist *l, const char *s)
{
    l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = xstrdup(s);
}

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

static const struct key_def keys[] = {
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

    STR("stats", "prometheus", stats.prometheus, F_EMPTY_NULL | F_NONE_NULL,
        check_prometheus),
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct key_def *key_find(const char *section, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static unsigned key_line(const struct config_ctx *c, const char *section,
                         const char *name)
{
    const struct key_def *k = key_find(section, name);

    return k ? c->lines[k - keys] : 0;
}

/* ---- durations ---- */

int config_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t sec = 0, frac = 0;
    int nd = 0, nf = 0;

    if (!s)
        return -1;
    for (; *s >= '0' && *s <= '9'; s++, nd++) {
        if (nd == 15)
            return -1;          /* 10^15 s: far beyond any sane setting */
        sec = sec * 10 + (uint64_t) (*s - '0');
    }
    if (nd == 0)
        return -1;
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++, nf++) {
            if (nf == 3)
                return -1;          /* finer than a millisecond */
            frac = frac * 10 + (uint64_t) (*s - '0');
        }
        if (nf == 0)
            return -1;
        while (nf++ < 3)
            frac *= 10;
    }
    if (*s)
        return -1;
    *ms = sec * 1000 + frac;
    return 0;
}

/* ---- setting one value ---- */

/* config_list_add - split v on blanks and commas, check and append. */
static int config_list_add(struct config_ctx *c, const struct key_def *k,
                           struct strlist *l, const char *v)
{
    char *copy = xstrdup(v), *save = NULL, *item;
    char why[160], q[CONFIG_QUOTE_MAX * 4 + 8];
    int r = 0;

    for (item = strtok_r(copy, " \t,", &save); item;
         item = strtok_r(NULL, " \t,", &save)) {
        /* inih strips " ;comment" from a key's first line only; do the
         * same for the continuation lines of a list */
        if (*item == ';')
            break;
        if (l->n >= CONFIG_LIST_MAX) {
            r = config_fail(c, c->lineno, k, "more than %d entries", CONFIG_LIST_MAX);
            break;
        }
        if (k->check && k->check(item, why, sizeof(why)) < 0) {
            r = config_fail(c, c->lineno, k, "%s: %s", why,
                            config_quote(item, q, sizeof(q)));
            break;
        }
        strlist_add(l, item);
    }
    free(copy);
    return r;
}

static int config_set(struct config_ctx *c, const struct key_def *k,
                      const char *v, int cont)
{
    char *field = (char *) c->cfg + k->off;
    char why[160], q[CONFIG_QUOTE_MAX * 4 + 8], lo[32], hi[32];
    unsigned long long n;
    uint64_t ms;

    if (cont && k->type != K_LIST)
        return config_fail(c, c->lineno, k, "an indented line continues the "
                           "previous value, and this key takes one value: %s",
                           (k->flags & F_SECRET) ? "(value not shown)"
                           : config_quote(v, q, sizeof(q)));

    switch (k->type) {
    case K_LIST: {
        struct strlist *l = (struct strlist *) (void *) field;

        if (!cont)
            strlist_clear(l);   /* given twice: the later wins */
        return config_list_add(c, k, l, v);
    }
    case K_STR: {
        char **sp = (char **) (void *) field, *copy;

        if (((k->flags & F_EMPTY_NULL) && !*v)
            || ((k->flags & F_NONE_NULL) && strcmp(v, "none") == 0)) {
            free(*sp);
            *sp = NULL;
            return 0;
        }
        copy = xstrdup(v);
        if (k->check && k->check(copy, why, sizeof(why)) < 0) {
            free(copy);
            return config_fail(c, c->lineno, k, "%s: %s", why,
                               config_quote(v, q, sizeof(q)));
        }
        free(*sp);
        *sp = copy;
        return 0;
    }
    case K_PCT:
    case K_UINT:
    case K_SIZE: {
        char num[24];
        size_t len = strlen(v);

        /* a percentage may say so: "25%" */
        if (k->type == K_PCT && len && v[len - 1] == '%')
            len--;
        if (len >= sizeof(num))
            len = sizeof(num) - 1;
        memcpy(num, v, len);
        num[len] = '\0';
        for (const char *p = num; *p || p == num; p++)
            if (*p < '0' || *p > '9')
                return config_fail(c, c->lineno, k, "not a number: %s",
                                   config_quote(v, q, sizeof(q)));
        if (util_parse_uint(num, k->max, &n) < 0 || n < k->min)
            return config_fail(c, c->lineno, k, "out of range (%llu..%llu): %s",
                               k->min, k->max, config_quote(v, q, sizeof(q)));
        if (k->type != K_SIZE)
            *(unsigned *) (void *) field = (unsigned) n;
        else
            *(size_t *) (void *) field = (size_t) n;
        return 0;
    }
    case K_MODE:
        n = 0;
        for (const char *p = v; *p || p == v; p++) {
            if (*p < '0' || *p > '7' || n > k->max)
                return config_fail(c, c->lineno, k, "not an octal mode such as "
                                   "0660: %s", config_quote(v, q, sizeof(q)));
            n = n * 8 + (unsigned) (*p - '0');
        }
        if (n > k->max)
            return config_fail(c, c->lineno, k, "not an octal mode such as "
                               "0660: %s", config_quote(v, q, sizeof(q)));
        *(unsigned *) (void *) field = (unsigned) n;
        return 0;
    case K_DUR:
        if (config_parse_duration(v, &ms) < 0)
            return config_fail(c, c->lineno, k, "not a duration in seconds "
                               "(such as 30 or 0.25): %s",
                               config_quote(v, q, sizeof(q)));
        if (ms < k->min || ms > k->max)
            return config_fail(c, c->lineno, k, "out of range (%s..%s): %s",
                               config_secs(k->min, lo, sizeof(lo)),
                               config_secs(k->max, hi, sizeof(hi)),
                               config_quote(v, q, sizeof(q)));
        *(uint64_t *) (void *) field = ms;
        return 0;
    case K_BOOL: {
        static const char *const yes[] = { "yes", "true", "on", "1", NULL };
        static const char *const no[] = { "no", "false", "off", "0", NULL };

        for (int i = 0; yes[i]; i++) {
            if (strcasecmp(v, yes[i]) == 0) {
                *(int *) (void *) field = 1;
                return 0;
            }
            if (strcasecmp(v, no[i]) == 0) {
                *(int *) (void *) field = 0;
                return 0;
            }
        }
        return config_fail(c, c->lineno, k, "not a boolean (yes/no, true/false, "
                           "on/off, 1/0): %s", config_quote(v, q, sizeof(q)));
    }
    case K_ENUM: {
        size_t used = 0;

        for (int i = 0; k->names[i]; i++)
            if (strcmp(v, k->names[i]) == 0) {
                k->set(c->cfg, i);
                return 0;
            }
        why[0] = 0;
        for (int i = 0; k->names[i]; i++) {
            int r = snprintf(why + used, sizeof(why) - used, "%s%s",
                             i ? (k->names[i + 1] ? ", " : " or ") : "", k->names[i]);
            if (r < 0 || (size_t) r >= sizeof(why) - used)
                break;
            used += (size_t) r;
        }
        return config_fail(c, c->lineno, k, "expected %s: %s", why,
                           config_quote(v, q, sizeof(q)));
    }
    case K_PWFILE:
        free(c->bind_pw_file);
        c->bind_pw_file = *v ? xstrdup(v) : NULL;
        return 0;
    }
    return -1;
}

/* ---- inih glue ---- */

static int config_known_section(const char *s, size_t n)
{
    for (int i = 0; sections[i]; i++)
        if (strlen(sections[i]) == n && strncmp(sections[i], s, n) == 0)
            return 1;
    return 0;
}

/*
 * config_reader - inih's fgets(): hand over one line, and follow inih's
 * state (see INI DIALECT above) so the handler can tell continuations.
 */
static char *config_reader(char *str, int num, void *stream)
{
    struct config_ctx *c = stream;
    const char *line = c->buf + c->pos, *nl, *t;
    size_t n, content, room = num > 2 ? (size_t) num - 2 : 0;

    if (c->failed || c->pos >= c->len)
        return NULL;
    nl = memchr(line, '\n', c->len - c->pos);
    n = nl ? (size_t) (nl - line) + 1 : c->len - c->pos;
    content = nl ? n - 1 : n;
    c->lineno++;
    if (memchr(line, 0, n)) {
        config_fail(c, c->lineno, NULL, "NUL byte in the file");
        return NULL;
    }
    if (content > room) {
        config_fail(c, c->lineno, NULL, "line longer than %zu bytes (continue a "
                    "list on indented lines)", room);
        return NULL;
    }
    memcpy(str, line, n);
    str[n] = 0;
    c->pos += n;

    /* inih: comment; else continuation if indented and a key came before
     * since the last section line; else a section line. */
    t = str;
    if (c->lineno == 1 && memcmp(t, "\xEF\xBB\xBF", 3) == 0)
        t += 3;                 /* inih skips a UTF-8 BOM */
    for (; *t && isspace((unsigned char) *t); t++)
        ;
    if (*t == 0 || *t == ';' || *t == '#') {
        c->cur_cont = 0;
    } else if (t > str && c->prev_valid) {
        c->cur_cont = 1;
    } else {
        c->cur_cont = 0;
        if (*t == '[') {
            const char *end = strchr(t, ']');

            c->prev_valid = 0;
            if (end && !config_known_section(t + 1, (size_t) (end - t - 1))) {
                config_fail(c, c->lineno, NULL, "[%.*s]: unknown section",
                            (int) (end - t - 1), t + 1);
                return NULL;
            }
        }
    }
    return str;
}

static int config_handler(void *user, const char *section, const char *name,
                          const char *value)
{
    struct config_ctx *c = user;
    const struct key_def *k;
    int cont = c->cur_cont;

    if (c->failed)
        return 0;
    c->prev_valid = 1;
    if (!*section) {
        config_fail(c, c->lineno, NULL, "%s: key outside any [section]", name);
        return 0;
    }
    if (!(k = key_find(section, name))) {
        if (!config_known_section(section, strlen(section)))
            config_fail(c, c->lineno, NULL, "[%s]: unknown section", section);
        else
            config_fail(c, c->lineno, NULL, "[%s] %s: unknown key", section, name);
        return 0;
    }
    if (config_set(c, k, value, cont) < 0)
        return 0;
    if (!cont)
        c->lines[k - keys] = c->lineno;
    return 1;
}

/* ---- after parsing ---- */

static int config_read_pwfile(struct config_ctx *c)
{
    const struct key_def *k = key_find("ldap", "bind_pw_file");
    unsigned line = c->lines[k - keys];
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

#define FAIL_AT(s, n, ...) config_fail(c, key_line(c, s, n), key_find(s, n), __VA_ARGS__)

static int config_cross_check(struct config_ctx *c)
{
    struct config *cfg = c->cfg;
    char a[32], b[32];
    unsigned l1, l2;

    if (key_line(c, "server", "listen") && cfg->server.listen.n == 0)
        return FAIL_AT("server", "listen", "no address given");
    if (cfg->server.listen.n == 0)
        strlist_add(&cfg->server.listen, "inet:127.0.0.1:10040");
    if (cfg->server.request_limit < cfg->server.line_limit)
        return FAIL_AT("server", "request_limit", "%zu is below line_limit (%zu)",
                       cfg->server.request_limit, cfg->server.line_limit);

    if (cfg->directory.domains.n == 0)
        return FAIL_AT("directory", "domains", "at least one domain is required");
    if (strcmp(cfg->directory.backend, "file") == 0 && !cfg->directory.file)
        return config_fail(c, key_line(c, "directory", "backend"),
                           key_find("directory", "file"),
                           "required with backend = file");
    if (strcmp(cfg->directory.backend, "ldap") == 0) {
        if (cfg->ldap.uri.n == 0)
            return config_fail(c, key_line(c, "directory", "backend"),
                               key_find("ldap", "uri"), "required with backend = ldap");
        if (!cfg->ldap.base)
            return config_fail(c, key_line(c, "directory", "backend"),
                               key_find("ldap", "base"), "required with backend = ldap");
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
            l1 = key_line(c, "harvest", "tarpit_max");
            l2 = key_line(c, "harvest", "postfix_timeout");
            if (before)
                snprintf(d, sizeof(d), " plus %s", config_secs(before, b, sizeof(b)));
            else
                d[0] = '\0';
            return config_fail(c, l1 ? l1 : l2, key_find("harvest", "tarpit_max"),
                               "%s%s is not below Postfix's "
                               "smtpd_policy_service_timeout (%s); Postfix would "
                               "give up first%s",
                               config_secs(cfg->harvest.tarpit_max_ms, a, sizeof(a)), d,
                               config_secs(cfg->harvest.postfix_timeout_ms, b,
                                           sizeof(b)),
                               before ? " (the plus: [redis] timeout and [ldap] "
                               "timeout, spent before the delay)" : "");
        }
        if (cfg->harvest.tarpit_delay_ms > cfg->harvest.tarpit_max_ms)
            return FAIL_AT("harvest", "tarpit_delay", "%s is above tarpit_max (%s)",
                           config_secs(cfg->harvest.tarpit_delay_ms, a, sizeof(a)),
                           config_secs(cfg->harvest.tarpit_max_ms, b, sizeof(b)));
    }
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

static void config_digest(struct config *cfg)
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

/* ---- load and free ---- */

static struct config *config_defaults(const char *path)
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
    cfg->harvest.wide_block_ceiling = 600;
    cfg->harvest.ipv4_wide_prefix = 24;
    cfg->harvest.ipv6_wide_prefix = 48;
    cfg->harvest.block_time_ms = 3600 * SEC;
    cfg->harvest.exempt_sasl = 1;
    cfg->harvest.ipv4_prefix = 32;
    cfg->harvest.ipv6_prefix = 64;
    cfg->harvest.postfix_timeout_ms = 100 * SEC;
    cfg->harvest.max_tracked = 100000;
    return cfg;
}

/* config_slurp - the whole file, NUL-terminated; NULL with err set. */
static char *config_slurp(const char *path, size_t *lenp, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *buf;
    size_t n;

    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    buf = xmalloc(CONFIG_FILE_MAX + 2);
    n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    if (n > CONFIG_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *lenp = n;
    return buf;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
    struct config_ctx c;
    unsigned lines[NKEYS];
    size_t len;
    char *buf;
    int r;

    if (errlen)
        err[0] = 0;
    if (!(buf = config_slurp(path, &len, err, errlen)))
        return NULL;

    memset(&c, 0, sizeof(c));
    memset(lines, 0, sizeof(lines));
    c.cfg = config_defaults(path);
    c.path = path;
    c.err = err;
    c.errlen = errlen;
    c.buf = buf;
    c.len = len;
    c.lines = lines;

    r = ini_parse_stream(config_reader, &c, config_handler, &c);
    /* inih reports its own syntax errors by line; report whichever came
     * first */
    if (r > 0 && (!c.failed || (unsigned) r < c.err_line)) {
        c.failed = 0;
        config_fail(&c, (unsigned) r, NULL, "syntax error: expected "
                    "'[section]' or 'key = value'");
    } else if (r < 0 && !c.failed) {
        config_fail(&c, 0, NULL, "cannot parse (inih error %d)", r);
    }
    if (!c.failed)
        config_cross_check(&c);
    free(buf);
    free(c.bind_pw_file);
    if (c.failed) {
        config_free(c.cfg);
        return NULL;
    }
    config_digest(c.cfg);
    return c.cfg;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    strlist_clear(&cfg->server.listen);
    free(cfg->server.control);
    free(cfg->server.user);
    free(cfg->directory.backend);
    free(cfg->directory.file);
    strlist_clear(&cfg->directory.domains);
    free(cfg->directory.recipient_delimiter);
    free(cfg->actions.unknown);
    free(cfg->actions.tempfail);
    free(cfg->actions.blocked);
    strlist_clear(&cfg->ldap.uri);
    free(cfg->ldap.bind_dn);
    if (cfg->ldap.bind_pw) {
        /* do not leave the secret in freed memory */
        volatile char *p = cfg->ldap.bind_pw;

        while (*p)
            *p++ = 0;
        free(cfg->ldap.bind_pw);
    }
    free(cfg->ldap.base);
    free(cfg->ldap.filter);
    free(cfg->ldap.tls_ca_file);
    free(cfg->redis.address);
    free(cfg->redis.password);
    free(cfg->redis.prefix);
    strlist_clear(&cfg->redis.sentinels);
    free(cfg->redis.master_name);
    strlist_clear(&cfg->harvest.whitelist);
    strlist_clear(&cfg->harvest.traps);
    free(cfg->stats.prometheus);
    free(cfg);
}
