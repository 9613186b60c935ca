#ifndef POLICYD_CONFIG_H
#define POLICYD_CONFIG_H

/*
 * config - the policyd.conf settings
 *
 * config_load() reads an INI file with inih into one immutable struct config.
 * Every key is known here: an unknown section or key, or a value that does not
 * parse, is an error that names the file, the line and the key.  A reload
 * builds a new struct config and swaps it in; nothing edits one in place.
 *
 * Durations are kept in milliseconds; in the file they are seconds, with
 * fractions allowed ("0.25").  Lists are separated by blanks or commas.
 */

#include <stddef.h>
#include <stdint.h>

struct strlist {
    char **v;
    size_t n;
};

enum log_target { LOG_TO_STDERR, LOG_TO_SYSLOG };
enum ldap_scope_cfg { SCOPE_BASE, SCOPE_ONE, SCOPE_SUB };
enum ldap_referrals_cfg { REFERRALS_IGNORE, REFERRALS_TEMPFAIL };
enum siege_action_cfg { SIEGE_ACT_DEFER, SIEGE_ACT_TARPIT, SIEGE_ACT_OFF };

#define CONFIG_PREFIX_MAX 64    /* [redis] prefix, bytes */

struct config {
    char *path;                 /* the file this came from */

    struct {
        struct strlist listen;  /* inet:HOST:PORT, inet:[V6]:PORT, unix:/path */
        char *control;          /* unix:/path, or NULL */
        unsigned socket_mode;   /* unix listener mode, octal */
        unsigned control_mode;
        unsigned max_connections;
        uint64_t idle_timeout_ms;
        uint64_t shutdown_timeout_ms;
        char *user;             /* drop to this user after binding */
        int allow_root;         /* serve as root without user */
        size_t line_limit;      /* longest attribute line, bytes */
        size_t attr_limit;      /* most attributes in one request */
        size_t request_limit;   /* largest request, bytes */
        enum log_target log;
        int log_level;          /* enum log_level (log.h); default info */
        int log_decisions;
    } server;

    struct {
        char *backend;          /* "file" or "ldap" */
        char *file;
        struct strlist domains; /* lowercase */
        char *recipient_delimiter; /* characters; "" disables */
        int ignore_case;        /* compare local parts without case */
    } directory;

    struct {
        char *unknown;
        char *tempfail;
        char *blocked;
        char *siege;            /* [siege] action = defer: the answer */
        int dry_run;            /* answer DUNNO / WARN, never delay */
    } actions;

    struct {
        struct strlist uri;
        char *bind_dn;
        char *bind_pw;          /* from bind_pw or bind_pw_file */
        char *base;
        enum ldap_scope_cfg scope;
        char *filter;           /* with %s %u %d */
        uint64_t timeout_ms;
        unsigned connections;
        unsigned max_inflight;  /* queries in flight per connection */
        int starttls;
        char *tls_ca_file;
        int fail_open;
        enum ldap_referrals_cfg referrals; /* continuation references */
    } ldap;

    struct {
        char *address;          /* host:port or unix:/path; NULL = no Redis */
        char *password;
        unsigned db;
        char *prefix;
        uint64_t timeout_ms;
        uint64_t connect_timeout_ms;
        struct strlist sentinels;
        char *master_name;
    } redis;

    struct {
        uint64_t positive_ttl_ms;
        uint64_t negative_ttl_ms;
        size_t local_size;
        uint64_t local_ttl_ms;
    } cache;

    struct {
        int enabled;
        int dry_run;            /* stages log and count, delay and block nothing */
        uint64_t window_ms;     /* half-life of the evidence */
        unsigned tarpit_after;  /* invalid recipients before any delay */
        unsigned tarpit_share;  /* ... and at least this % of them invalid */
        uint64_t tarpit_delay_ms;
        uint64_t tarpit_max_ms;
        unsigned block_after;   /* invalid recipients before a block */
        unsigned block_share;   /* ... and at least this % invalid */
        unsigned block_ceiling; /* invalid recipients that block at any share */
        uint64_t block_time_ms;
        unsigned wide_tarpit_after;  /* the same for the wide network */
        unsigned wide_block_after;
        unsigned wide_block_ceiling;
        struct strlist whitelist; /* CIDRs */
        struct strlist traps;   /* "local@domain" or "local@" */
        int exempt_sasl;
        unsigned ipv4_prefix;
        unsigned ipv6_prefix;
        unsigned ipv4_wide_prefix; /* 0: no wide level */
        unsigned ipv6_wide_prefix;
        uint64_t postfix_timeout_ms;
        size_t max_tracked;     /* networks kept in memory at most */
    } harvest;

    struct {
        enum siege_action_cfg action;
        unsigned threshold;     /* unknown recipients per minute, fleet-wide */
        unsigned baseline_factor; /* or this multiple of the learned rate */
        unsigned low_mark;      /* % of the trigger that ends a siege */
        uint64_t window_ms;     /* the rate's sliding window */
        uint64_t cooldown_ms;   /* below low_mark this long: the end */
        uint64_t baseline_window_ms; /* half-life of the learned rate */
        uint64_t retry_min_ms;  /* defer: a retry this late is admitted ... */
        uint64_t retry_max_ms;  /* ... if it comes before this */
        uint64_t delay_ms;      /* tarpit: every answer waits this long */
        unsigned established_after; /* valid recipients of a clean network */
        unsigned established_days; /* an established network is remembered */
    } siege;

    struct {
        char *prometheus;       /* inet:HOST:PORT or NULL */
    } stats;

    char dir_digest[17];        /* see config_directory_digest() */
};

/*
 * config_load - parse and validate PATH.  Returns a new config, or NULL
 * with a message "PATH:LINE: [section] key: why" in err.
 */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *cfg);

/* config_parse_duration - "1.5" seconds -> 1500 ms; -1 on error. */
int config_parse_duration(const char *s, uint64_t *ms);

/* config_directory_digest - short hex digest of the settings that decide
 * what the directory answers (backend, file, ldap base/filter/scope/uri,
 * delimiter, case).  Cache keys carry it so a change never serves old
 * answers. */
const char *config_directory_digest(const struct config *cfg);

#endif
