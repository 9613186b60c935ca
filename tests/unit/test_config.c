/*
 * test_config - config_load(): every key, the defaults, every kind of error
 * with its exact "PATH:LINE: [section] key: reason" text, the cross-checks,
 * bind_pw_file and the directory digest.  Configs are written to mkstemp()
 * files and removed afterwards.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../backends/ldap_filter.h"
#include "../../policyd/config.h"
#include "../../policyd/log.h"

#define MINIMAL "[directory]\nfile = /dev/null\ndomains = example.com\n"

static char tmpdir[64];

static int setup(void **state)
{
    (void) state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];

    (void) state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* write_file - content (len bytes) into a new file; its path into path. */
static void write_file_len(char *path, size_t pathlen, const char *content, size_t len)
{
    int fd;

    snprintf(path, pathlen, "%s/cfg.XXXXXX", tmpdir);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t) len);
    close(fd);
}

static void write_file(char *path, size_t pathlen, const char *content)
{
    write_file_len(path, pathlen, content, strlen(content));
}

/* load - parse content; the config or NULL, the message in err. */
static struct config *load(const char *content, char *path, size_t pathlen,
                           char *err, size_t errlen)
{
    write_file(path, pathlen, content);
    return config_load(path, err, errlen);
}

/* expect_error - content must fail with exactly "PATH:" + tail. */
static void expect_error(const char *content, const char *tail)
{
    char path[128], err[512], want[640];
    struct config *cfg = load(content, path, sizeof(path), err, sizeof(err));

    if (cfg)
        fail_msg("loaded, expected error %s", tail);
    snprintf(want, sizeof(want), "%s:%s", path, tail);
    assert_string_equal(err, want);
}

static struct config *expect_ok(const char *content)
{
    char path[128], err[512];
    struct config *cfg = load(content, path, sizeof(path), err, sizeof(err));

    if (!cfg)
        fail_msg("expected success, got: %s", err);
    return cfg;
}

static void test_defaults(void **state)
{
    struct config *cfg = expect_ok(MINIMAL);

    (void) state;
    assert_int_equal(cfg->server.listen.n, 1);
    assert_string_equal(cfg->server.listen.v[0], "inet:127.0.0.1:10040");
    assert_null(cfg->server.control);
    assert_int_equal(cfg->server.socket_mode, 0666);
    assert_int_equal(cfg->server.control_mode, 0660);
    assert_int_equal(cfg->server.max_connections, 10000);
    assert_int_equal(cfg->server.idle_timeout_ms, 600000);
    assert_int_equal(cfg->server.shutdown_timeout_ms, 10000);
    assert_null(cfg->server.user);
    assert_int_equal(cfg->server.allow_root, 0);
    assert_int_equal(cfg->server.line_limit, 4096);
    assert_int_equal(cfg->server.attr_limit, 100);
    assert_int_equal(cfg->server.request_limit, 32768);
    assert_int_equal(cfg->server.log, LOG_TO_STDERR);
    assert_int_equal(cfg->server.log_level, LOG_LVL_INFO);
    assert_int_equal(cfg->server.log_decisions, 1);

    assert_string_equal(cfg->directory.backend, "file");
    assert_string_equal(cfg->directory.file, "/dev/null");
    assert_int_equal(cfg->directory.domains.n, 1);
    assert_string_equal(cfg->directory.domains.v[0], "example.com");
    assert_string_equal(cfg->directory.recipient_delimiter, "+");
    assert_int_equal(cfg->directory.ignore_case, 1);

    assert_string_equal(cfg->actions.unknown, "550 5.1.1 User unknown");
    assert_string_equal(cfg->actions.tempfail,
                        "451 4.3.0 Directory temporarily unavailable, try again later");
    assert_string_equal(cfg->actions.blocked,
                        "450 4.7.1 Too many invalid recipients, try again later");

    assert_int_equal(cfg->ldap.uri.n, 0);
    assert_null(cfg->ldap.bind_dn);
    assert_null(cfg->ldap.bind_pw);
    assert_null(cfg->ldap.base);
    assert_int_equal(cfg->ldap.scope, SCOPE_SUB);
    assert_string_equal(cfg->ldap.filter, "(mail=%s)");
    assert_int_equal(cfg->ldap.timeout_ms, 2000);
    assert_int_equal(cfg->ldap.connections, 2);
    assert_int_equal(cfg->ldap.max_inflight, 64);
    assert_int_equal(cfg->ldap.starttls, 0);
    assert_null(cfg->ldap.tls_ca_file);
    assert_int_equal(cfg->ldap.fail_open, 0);

    assert_null(cfg->redis.address);
    assert_null(cfg->redis.password);
    assert_int_equal(cfg->redis.db, 0);
    assert_string_equal(cfg->redis.prefix, "policyd:");
    assert_int_equal(cfg->redis.timeout_ms, 500);
    assert_int_equal(cfg->redis.connect_timeout_ms, 1000);
    assert_int_equal(cfg->redis.sentinels.n, 0);
    assert_null(cfg->redis.master_name);

    assert_int_equal(cfg->cache.positive_ttl_ms, 3600000);
    assert_int_equal(cfg->cache.negative_ttl_ms, 300000);
    assert_int_equal(cfg->cache.local_size, 10000);
    assert_int_equal(cfg->cache.local_ttl_ms, 30000);

    assert_int_equal(cfg->harvest.enabled, 1);
    assert_int_equal(cfg->harvest.window_ms, 3600000);
    assert_int_equal(cfg->harvest.tarpit_after, 5);
    assert_int_equal(cfg->harvest.tarpit_delay_ms, 1000);
    assert_int_equal(cfg->harvest.tarpit_max_ms, 30000);
    assert_int_equal(cfg->harvest.block_after, 20);
    assert_int_equal(cfg->harvest.block_time_ms, 3600000);
    assert_int_equal(cfg->harvest.whitelist.n, 0);
    assert_int_equal(cfg->harvest.exempt_sasl, 1);
    assert_int_equal(cfg->harvest.ipv4_prefix, 32);
    assert_int_equal(cfg->harvest.ipv6_prefix, 64);
    assert_int_equal(cfg->harvest.postfix_timeout_ms, 100000);
    assert_int_equal(cfg->harvest.max_tracked, 100000);

    assert_null(cfg->stats.prometheus);
    assert_int_equal(strlen(config_directory_digest(cfg)), 16);
    config_free(cfg);
}

static void test_full_roundtrip(void **state)
{
    char pwpath[128], text[4096];
    struct config *cfg;

    (void) state;
    write_file(pwpath, sizeof(pwpath), "s3cret;pw\n");
    snprintf(text, sizeof(text),
        "# every key, none at its default\n"
        "[server]\n"
        "listen = inet:127.0.0.1:2525, inet:[::1]:2526\n"
        "    unix:/run/policyd/policyd.sock\n"
        "control = unix:/run/policyd/control.sock\n"
        "socket_mode = 0660\n"
        "control_mode = 0600\n"
        "max_connections = 500\n"
        "idle_timeout = 120.5\n"
        "shutdown_timeout = 3\n"
        "user = policyd\n"
        "allow_root = yes\n"
        "line_limit = 2048\n"
        "attr_limit = 200\n"
        "request_limit = 65536\n"
        "log = syslog\n"
        "log_level = debug\n"
        "log_decisions = off\n"
        "\n"
        "[directory]\n"
        "backend = ldap\n"
        "file = /etc/policyd/recipients\n"
        "domains = Example.COM. example.org,example.net\n"
        "recipient_delimiter = +-\n"
        "ignore_case = false\n"
        "[actions]\n"
        "unknown = 550 5.1.1 No such user here\n"
        "tempfail = DEFER_IF_PERMIT directory down\n"
        "blocked = 421 4.7.0 Go away\n"
        "[ldap]\n"
        "uri = ldap://127.0.0.1:3389 ldapi://%%2Frun%%2Fslapd.sock\n"
        "bind_dn = cn=policyd,dc=example,dc=com\n"
        "bind_pw_file = %s\n"
        "base = ou=people,dc=example,dc=com\n"
        "scope = one\n"
        "filter = (|(mail=%%s)(mailAlternateAddress=%%s)(uid=%%u))\n"
        "timeout = 0.75\n"
        "connections = 4\n"
        "max_inflight = 32\n"
        "starttls = on\n"
        "tls_ca_file = /dev/null\n"
        "fail_open = 1\n"
        "[redis]\n"
        "password = redispw\n"
        "db = 3\n"
        "prefix = pd:\n"
        "timeout = 0.2\n"
        "connect_timeout = 2\n"
        "sentinels = 127.0.0.1:26379, [::1]:26380\n"
        "master_name = mymaster\n"
        "[cache]\n"
        "positive_ttl = 60\n"
        "negative_ttl = 0\n"
        "local_size = 5\n"
        "local_ttl = 1.5\n"
        "[harvest]\n"
        "enabled = true\n"
        "window = 600\n"
        "tarpit_after = 3\n"
        "tarpit_delay = 0.5\n"
        "tarpit_max = 20\n"
        "block_after = 10\n"
        "block_time = 7200\n"
        "whitelist = 127.0.0.0/8, ::1 192.0.2.7\n"
        "exempt_sasl = no\n"
        "ipv4_prefix = 24\n"
        "ipv6_prefix = 48\n"
        "postfix_timeout = 60\n"
        "max_tracked = 1000\n"
        "[stats]\n"
        "prometheus = inet:127.0.0.1:9187\n", pwpath);
    cfg = expect_ok(text);

    assert_int_equal(cfg->server.listen.n, 3);
    assert_string_equal(cfg->server.listen.v[0], "inet:127.0.0.1:2525");
    assert_string_equal(cfg->server.listen.v[1], "inet:[::1]:2526");
    assert_string_equal(cfg->server.listen.v[2], "unix:/run/policyd/policyd.sock");
    assert_string_equal(cfg->server.control, "unix:/run/policyd/control.sock");
    assert_int_equal(cfg->server.socket_mode, 0660);
    assert_int_equal(cfg->server.control_mode, 0600);
    assert_int_equal(cfg->server.max_connections, 500);
    assert_int_equal(cfg->server.idle_timeout_ms, 120500);
    assert_int_equal(cfg->server.shutdown_timeout_ms, 3000);
    assert_string_equal(cfg->server.user, "policyd");
    assert_int_equal(cfg->server.allow_root, 1);
    assert_int_equal(cfg->server.line_limit, 2048);
    assert_int_equal(cfg->server.attr_limit, 200);
    assert_int_equal(cfg->server.request_limit, 65536);
    assert_int_equal(cfg->server.log, LOG_TO_SYSLOG);
    assert_int_equal(cfg->server.log_level, LOG_LVL_DEBUG);
    assert_int_equal(cfg->server.log_decisions, 0);

    assert_string_equal(cfg->directory.backend, "ldap");
    assert_string_equal(cfg->directory.file, "/etc/policyd/recipients");
    assert_int_equal(cfg->directory.domains.n, 3);
    assert_string_equal(cfg->directory.domains.v[0], "example.com");
    assert_string_equal(cfg->directory.domains.v[1], "example.org");
    assert_string_equal(cfg->directory.domains.v[2], "example.net");
    assert_string_equal(cfg->directory.recipient_delimiter, "+-");
    assert_int_equal(cfg->directory.ignore_case, 0);

    assert_string_equal(cfg->actions.unknown, "550 5.1.1 No such user here");
    assert_string_equal(cfg->actions.tempfail, "DEFER_IF_PERMIT directory down");
    assert_string_equal(cfg->actions.blocked, "421 4.7.0 Go away");

    assert_int_equal(cfg->ldap.uri.n, 2);
    assert_string_equal(cfg->ldap.uri.v[0], "ldap://127.0.0.1:3389");
    assert_string_equal(cfg->ldap.uri.v[1], "ldapi://%2Frun%2Fslapd.sock");
    assert_string_equal(cfg->ldap.bind_dn, "cn=policyd,dc=example,dc=com");
    assert_string_equal(cfg->ldap.bind_pw, "s3cret;pw");
    assert_string_equal(cfg->ldap.base, "ou=people,dc=example,dc=com");
    assert_int_equal(cfg->ldap.scope, SCOPE_ONE);
    assert_string_equal(cfg->ldap.filter,
                        "(|(mail=%s)(mailAlternateAddress=%s)(uid=%u))");
    assert_int_equal(cfg->ldap.timeout_ms, 750);
    assert_int_equal(cfg->ldap.connections, 4);
    assert_int_equal(cfg->ldap.max_inflight, 32);
    assert_int_equal(cfg->ldap.starttls, 1);
    assert_string_equal(cfg->ldap.tls_ca_file, "/dev/null");
    assert_int_equal(cfg->ldap.fail_open, 1);

    assert_null(cfg->redis.address);
    assert_string_equal(cfg->redis.password, "redispw");
    assert_int_equal(cfg->redis.db, 3);
    assert_string_equal(cfg->redis.prefix, "pd:");
    assert_int_equal(cfg->redis.timeout_ms, 200);
    assert_int_equal(cfg->redis.connect_timeout_ms, 2000);
    assert_int_equal(cfg->redis.sentinels.n, 2);
    assert_string_equal(cfg->redis.sentinels.v[0], "127.0.0.1:26379");
    assert_string_equal(cfg->redis.sentinels.v[1], "[::1]:26380");
    assert_string_equal(cfg->redis.master_name, "mymaster");

    assert_int_equal(cfg->cache.positive_ttl_ms, 60000);
    assert_int_equal(cfg->cache.negative_ttl_ms, 0);
    assert_int_equal(cfg->cache.local_size, 5);
    assert_int_equal(cfg->cache.local_ttl_ms, 1500);

    assert_int_equal(cfg->harvest.enabled, 1);
    assert_int_equal(cfg->harvest.window_ms, 600000);
    assert_int_equal(cfg->harvest.tarpit_after, 3);
    assert_int_equal(cfg->harvest.tarpit_delay_ms, 500);
    assert_int_equal(cfg->harvest.tarpit_max_ms, 20000);
    assert_int_equal(cfg->harvest.block_after, 10);
    assert_int_equal(cfg->harvest.block_time_ms, 7200000);
    assert_int_equal(cfg->harvest.whitelist.n, 3);
    assert_string_equal(cfg->harvest.whitelist.v[0], "127.0.0.0/8");
    assert_string_equal(cfg->harvest.whitelist.v[1], "::1");
    assert_string_equal(cfg->harvest.whitelist.v[2], "192.0.2.7");
    assert_int_equal(cfg->harvest.exempt_sasl, 0);
    assert_int_equal(cfg->harvest.ipv4_prefix, 24);
    assert_int_equal(cfg->harvest.ipv6_prefix, 48);
    assert_int_equal(cfg->harvest.postfix_timeout_ms, 60000);
    assert_int_equal(cfg->harvest.max_tracked, 1000);

    assert_string_equal(cfg->stats.prometheus, "inet:127.0.0.1:9187");
    config_free(cfg);
}

static void test_redis_address(void **state)
{
    struct config *cfg;

    (void) state;
    cfg = expect_ok(MINIMAL "[redis]\naddress = 127.0.0.1:6379\n");
    assert_string_equal(cfg->redis.address, "127.0.0.1:6379");
    config_free(cfg);
    cfg = expect_ok(MINIMAL "[redis]\naddress = unix:/run/redis/redis.sock\n");
    assert_string_equal(cfg->redis.address, "unix:/run/redis/redis.sock");
    config_free(cfg);
    cfg = expect_ok(MINIMAL "[redis]\naddress = [::1]:6379\n");
    assert_string_equal(cfg->redis.address, "[::1]:6379");
    config_free(cfg);
    expect_error(MINIMAL "[redis]\naddress = ::1:6379\n",
                 "5: [redis] address: bad host name (an IPv6 address needs "
                 "[brackets]): '::1:6379'");
    expect_error(MINIMAL "[redis]\naddress = localhost:0\n",
                 "5: [redis] address: port must be 1..65535: 'localhost:0'");
}

static void test_missing_file(void **state)
{
    char path[160], err[256], want[256];

    (void) state;
    snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
    assert_null(config_load(path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);
}

static void test_number_errors(void **state)
{
    (void) state;
    expect_error(MINIMAL "\n[server]\nmax_connections = abc\n",
                 "6: [server] max_connections: not a number: 'abc'");
    expect_error(MINIMAL "[server]\nmax_connections = -1\n",
                 "5: [server] max_connections: not a number: '-1'");
    expect_error(MINIMAL "[server]\nmax_connections =\n",
                 "5: [server] max_connections: not a number: ''");
    expect_error(MINIMAL "[server]\nmax_connections = 0\n",
                 "5: [server] max_connections: out of range (1..1000000): '0'");
    expect_error(MINIMAL "[ldap]\nconnections = 65\n",
                 "5: [ldap] connections: out of range (1..64): '65'");
    expect_error(MINIMAL "[harvest]\nipv4_prefix = 33\n",
                 "5: [harvest] ipv4_prefix: out of range (0..32): '33'");
    expect_error(MINIMAL "[harvest]\nipv6_prefix = 129\n",
                 "5: [harvest] ipv6_prefix: out of range (0..128): '129'");
    expect_error(MINIMAL "[server]\nmax_connections = 99999999999999999999999\n",
                 "5: [server] max_connections: out of range (1..1000000): "
                 "'99999999999999999999999'");
    expect_error(MINIMAL "[server]\nsocket_mode = 0668\n",
                 "5: [server] socket_mode: not an octal mode such as 0660: '0668'");
    expect_error(MINIMAL "[server]\nsocket_mode = 01777\n",
                 "5: [server] socket_mode: not an octal mode such as 0660: '01777'");
}

static void test_bool_and_enum_errors(void **state)
{
    struct config *cfg;

    (void) state;
    expect_error(MINIMAL "[ldap]\nstarttls = maybe\n",
                 "5: [ldap] starttls: not a boolean (yes/no, true/false, on/off, "
                 "1/0): 'maybe'");
    expect_error(MINIMAL "[server]\nlog = file\n",
                 "5: [server] log: expected stderr or syslog: 'file'");
    expect_error(MINIMAL "[server]\nlog_level = verbose\n",
                 "5: [server] log_level: expected debug, info, warning or error: "
                 "'verbose'");
    expect_error(MINIMAL "[ldap]\nscope = subtree\n",
                 "5: [ldap] scope: expected base, one or sub: 'subtree'");
    cfg = expect_ok(MINIMAL "[ldap]\nstarttls = ON\nfail_open = True\n"
                    "[harvest]\nenabled = 0\n[server]\nlog_level = warning\n");
    assert_int_equal(cfg->ldap.starttls, 1);
    assert_int_equal(cfg->ldap.fail_open, 1);
    assert_int_equal(cfg->harvest.enabled, 0);
    assert_int_equal(cfg->server.log_level, LOG_LVL_WARN);
    config_free(cfg);
}

static void test_duration_parse(void **state)
{
    static const struct { const char *s; int ok; uint64_t ms; } cases[] = {
        { "0", 0, 0 }, { "1", 0, 1000 }, { "0.25", 0, 250 }, { "1.5", 0, 1500 },
        { "0.001", 0, 1 }, { "10.010", 0, 10010 }, { "007", 0, 7000 },
        { "999999999999999", 0, 999999999999999000ULL },
        { "", -1, 0 }, { "-1", -1, 0 }, { "+1", -1, 0 }, { "1.", -1, 0 },
        { ".5", -1, 0 }, { "0.0001", -1, 0 }, { "1s", -1, 0 }, { " 1", -1, 0 },
        { "1 ", -1, 0 }, { "1e3", -1, 0 }, { "abc", -1, 0 }, { "1..2", -1, 0 },
        { "1000000000000000", -1, 0 }, { "18446744073709551616", -1, 0 },
    };

    (void) state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t ms = 12345;
        int r = config_parse_duration(cases[i].s, &ms);

        if (r != cases[i].ok)
            fail_msg("'%s': got %d, want %d", cases[i].s, r, cases[i].ok);
        if (r == 0 && ms != cases[i].ms)
            fail_msg("'%s': got %llu ms", cases[i].s, (unsigned long long) ms);
    }
    assert_int_equal(config_parse_duration(NULL, &(uint64_t){ 0 }), -1);
}

static void test_duration_errors(void **state)
{
    (void) state;
    expect_error(MINIMAL "[ldap]\ntimeout = 2s\n",
                 "5: [ldap] timeout: not a duration in seconds (such as 30 or "
                 "0.25): '2s'");
    expect_error(MINIMAL "[ldap]\ntimeout = 0\n",
                 "5: [ldap] timeout: out of range (0.001s..300s): '0'");
    expect_error(MINIMAL "[redis]\ntimeout = -0.5\n",
                 "5: [redis] timeout: not a duration in seconds (such as 30 or "
                 "0.25): '-0.5'");
}

static void test_unknown(void **state)
{
    (void) state;
    expect_error(MINIMAL "[server]\nmax_conections = 5\n",
                 "5: [server] max_conections: unknown key");
    /* an empty unknown section: inih never calls the handler for it */
    expect_error(MINIMAL "\n[servr]\n", "5: [servr]: unknown section");
    expect_error(MINIMAL "[servr]\nlisten = inet:127.0.0.1:1\n",
                 "4: [servr]: unknown section");
    expect_error("domains = example.com\n",
                 "1: domains: key outside any [section]");
    /* a key of another section */
    expect_error(MINIMAL "[cache]\nfilter = (mail=%s)\n",
                 "5: [cache] filter: unknown key");
}

static void test_syntax(void **state)
{
    char line[400], text[600];

    (void) state;
    expect_error(MINIMAL "[server\n", "4: syntax error: expected '[section]' or "
                 "'key = value'");
    expect_error(MINIMAL "[server]\nmax_connections 5\n",
                 "5: syntax error: expected '[section]' or 'key = value'");
    /* the earlier of an inih error and ours is reported */
    expect_error(MINIMAL "[server]\nbogus line\nmax_connections = x\n",
                 "5: syntax error: expected '[section]' or 'key = value'");

    /* INI_MAX_LINE: content up to 198 bytes is fine, 199 is refused */
    memset(line, 0, sizeof(line));
    memcpy(line, "unknown = 550 5.1.1 ", 20);
    memset(line + 20, 'x', 198 - 20);
    snprintf(text, sizeof(text), MINIMAL "[actions]\n%s\n", line);
    config_free(expect_ok(text));
    line[198] = 'x';
    snprintf(text, sizeof(text), MINIMAL "[actions]\n%s\n", line);
    expect_error(text, "5: line longer than 198 bytes (continue a list on "
                 "indented lines)");
    /* ...also on the last line without a newline */
    snprintf(text, sizeof(text), MINIMAL "[actions]\n%s", line);
    expect_error(text, "5: line longer than 198 bytes (continue a list on "
                 "indented lines)");
}

static void test_nul_byte(void **state)
{
    static const char text[] = MINIMAL "[server]\nuser = a\0b\n";
    char path[128], err[256], want[300];

    (void) state;
    write_file_len(path, sizeof(path), text, sizeof(text) - 1);
    assert_null(config_load(path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s:5: NUL byte in the file", path);
    assert_string_equal(err, want);
}

static void test_dialect(void **state)
{
    struct config *cfg;

    (void) state;
    /* continuation lines extend a list; comments and blank lines between
     * do not end it; a later key replaces the whole list */
    cfg = expect_ok("[directory]\nfile = /dev/null\n"
                    "domains = a.example\n"
                    "    b.example, c.example\n"
                    "\n"
                    "# comment\n"
                    "\td.example\n"
                    "[harvest]\n"
                    "whitelist = 10.0.0.0/8\n"
                    "whitelist = 192.0.2.0/24 ; inline comment\n"
                    "max_tracked : 7\n");
    assert_int_equal(cfg->directory.domains.n, 4);
    assert_string_equal(cfg->directory.domains.v[3], "d.example");
    assert_int_equal(cfg->harvest.whitelist.n, 1);
    assert_string_equal(cfg->harvest.whitelist.v[0], "192.0.2.0/24");
    assert_int_equal(cfg->harvest.max_tracked, 7);
    config_free(cfg);

    /* a scalar given twice: the later wins */
    cfg = expect_ok(MINIMAL "[server]\nmax_connections = 5\nmax_connections = 6\n");
    assert_int_equal(cfg->server.max_connections, 6);
    config_free(cfg);

    /* an indented line after a scalar is a continuation, and refused */
    expect_error(MINIMAL "[server]\nmax_connections = 5\n  idle_timeout = 3\n",
                 "6: [server] max_connections: an indented line continues the "
                 "previous value, and this key takes one value: 'idle_timeout = 3'");
    /* ...without echoing a secret */
    expect_error(MINIMAL "[redis]\npassword = abc\n  def\n",
                 "6: [redis] password: an indented line continues the previous "
                 "value, and this key takes one value: (value not shown)");
    /* but an indented first key of a section is an ordinary key */
    cfg = expect_ok(MINIMAL "[server]\n  max_connections = 9\n");
    assert_int_equal(cfg->server.max_connections, 9);
    config_free(cfg);
    /* ...and an indented line after a section line is no continuation */
    cfg = expect_ok("[directory]\nfile = /dev/null\ndomains = a.example\n"
                    "[directory]\n  domains = b.example\n");
    assert_int_equal(cfg->directory.domains.n, 1);
    assert_string_equal(cfg->directory.domains.v[0], "b.example");
    config_free(cfg);
    /* an indented list item after a section line starting with '[' */
    cfg = expect_ok(MINIMAL "[redis]\nmaster_name = m\nsentinels = 127.0.0.1:1\n"
                    "  [::1]:2\n");
    assert_int_equal(cfg->redis.sentinels.n, 2);
    assert_string_equal(cfg->redis.sentinels.v[1], "[::1]:2");
    config_free(cfg);
    /* a UTF-8 byte order mark is skipped */
    config_free(expect_ok("\xEF\xBB\xBF" MINIMAL));
    /* CRLF line ends */
    cfg = expect_ok("[directory]\r\nfile = /dev/null\r\ndomains = x.example\r\n");
    assert_string_equal(cfg->directory.domains.v[0], "x.example");
    assert_string_equal(cfg->directory.file, "/dev/null");
    config_free(cfg);
}

static void test_values(void **state)
{
    char want[256];

    (void) state;
    expect_error(MINIMAL "[server]\nlisten = tcp:127.0.0.1:1\n",
                 "5: [server] listen: expected inet:HOST:PORT, inet:[IPV6]:PORT "
                 "or unix:/PATH: 'tcp:127.0.0.1:1'");
    expect_error(MINIMAL "[server]\nlisten = inet:127.0.0.1:65536\n",
                 "5: [server] listen: port must be 1..65535: 'inet:127.0.0.1:65536'");
    expect_error(MINIMAL "[server]\nlisten = inet::10040\n",
                 "5: [server] listen: expected HOST:PORT: 'inet::10040'");
    expect_error(MINIMAL "[server]\nlisten = unix:relative.sock\n",
                 "5: [server] listen: unix socket path must be absolute: "
                 "'unix:relative.sock'");
    expect_error(MINIMAL "[server]\nlisten =\n", "5: [server] listen: no address given");
    expect_error(MINIMAL "[server]\ncontrol = inet:127.0.0.1:1\n",
                 "5: [server] control: expected unix:/PATH or none: "
                 "'inet:127.0.0.1:1'");
    expect_error(MINIMAL "[stats]\nprometheus = unix:/x\n",
                 "5: [stats] prometheus: expected inet:HOST:PORT or none: 'unix:/x'");
    expect_error(MINIMAL "[harvest]\nwhitelist = 10.0.0.0/8 10.0.0.0/33\n",
                 "5: [harvest] whitelist: not an address or ADDRESS/PREFIX: "
                 "'10.0.0.0/33'");
    expect_error(MINIMAL "[actions]\nunknown = 250 fine\n",
                 "5: [actions] unknown: expected a 4xx/5xx code and text, or an "
                 "access(5) action such as DUNNO, REJECT or DEFER: '250 fine'");
    expect_error(MINIMAL "[actions]\nblocked = 450\n",
                 "5: [actions] blocked: a 450 code must be followed by a space and "
                 "text: '450'");
    expect_error(MINIMAL "[actions]\ntempfail =\n",
                 "5: [actions] tempfail: empty action: ''");
    expect_error(MINIMAL "[actions]\ntempfail = defer\n",
                 "5: [actions] tempfail: expected a 4xx/5xx code and text, or an "
                 "access(5) action such as DUNNO, REJECT or DEFER: 'defer'");
    expect_error(MINIMAL "[actions]\nunknown = 550 bad\x01text\n",
                 "5: [actions] unknown: must be printable ASCII on one line: "
                 "'550 bad\\x01text'");
    /* the reason is ldap_filter.c's own text */
    snprintf(want, sizeof(want), "5: [ldap] filter: %s: '(mail=%%x)'",
             ldap_filter_strerror(LDAP_FILTER_EBADTMPL));
    expect_error(MINIMAL "[ldap]\nfilter = (mail=%x)\n", want);
    snprintf(want, sizeof(want), "5: [ldap] filter: %s: '(objectClass=person)'",
             ldap_filter_strerror(LDAP_FILTER_ENOSUBST));
    expect_error(MINIMAL "[ldap]\nfilter = (objectClass=person)\n", want);
    snprintf(want, sizeof(want), "5: [ldap] filter: %s: '(mail=%%s'",
             ldap_filter_strerror(LDAP_FILTER_EPARENS));
    expect_error(MINIMAL "[ldap]\nfilter = (mail=%s\n", want);
    expect_error(MINIMAL "[ldap]\nuri = http://x\n",
                 "5: [ldap] uri: expected ldap://, ldaps:// or ldapi:// URI: 'http://x'");
    expect_error("[directory]\nfile = /dev/null\ndomains = example..com\n",
                 "3: [directory] domains: not a domain name: 'example..com'");
    expect_error("[directory]\nfile = /dev/null\ndomains = a.example #x\n",
                 "3: [directory] domains: not a domain name: '#x'");
    expect_error(MINIMAL "[directory]\nbackend = sql\n",
                 "5: [directory] backend: expected file or ldap: 'sql'");
    expect_error(MINIMAL "[server]\nuser = ro ot\n",
                 "5: [server] user: bad user name: 'ro ot'");
    /* a long value is cut short in the message */
    expect_error(MINIMAL "[server]\nuser = "
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                 "5: [server] user: user name longer than 32 bytes: "
                 "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
}

static void test_cross_checks(void **state)
{
    (void) state;
    expect_error("[directory]\nfile = /dev/null\n",
                 "0: [directory] domains: at least one domain is required");
    expect_error("[directory]\nfile = /dev/null\ndomains =\n",
                 "3: [directory] domains: at least one domain is required");
    expect_error("[directory]\ndomains = example.com\n",
                 "0: [directory] file: required with backend = file");
    expect_error("[directory]\nbackend = ldap\ndomains = example.com\n"
                 "[ldap]\nbase = dc=example\n",
                 "2: [ldap] uri: required with backend = ldap");
    expect_error("[directory]\nbackend = ldap\ndomains = example.com\n"
                 "[ldap]\nuri = ldap://127.0.0.1:1\n",
                 "2: [ldap] base: required with backend = ldap");
    expect_error(MINIMAL "[ldap]\nbind_dn = cn=x\nbind_pw = a\nbind_pw_file = /dev/null\n",
                 "7: [ldap] bind_pw_file: bind_pw and bind_pw_file are mutually "
                 "exclusive");
    expect_error(MINIMAL "[ldap]\nbind_dn = cn=x\n",
                 "5: [ldap] bind_dn: needs bind_pw or bind_pw_file");
    expect_error(MINIMAL "[ldap]\nbind_pw = x\n",
                 "5: [ldap] bind_pw: a password without bind_dn");
    expect_error(MINIMAL "[ldap]\nuri = ldaps://127.0.0.1\nstarttls = yes\n",
                 "6: [ldap] starttls: cannot be used with an ldaps:// URI");
    expect_error(MINIMAL "[ldap]\ntls_ca_file = /nonexistent/ca.pem\n",
                 "5: [ldap] tls_ca_file: cannot read '/nonexistent/ca.pem': "
                 "No such file or directory");
    expect_error(MINIMAL "[redis]\nsentinels = 127.0.0.1:26379\n",
                 "0: [redis] master_name: required with sentinels");
    expect_error(MINIMAL "[redis]\nmaster_name = m\n",
                 "5: [redis] master_name: only used with sentinels");
    expect_error(MINIMAL "[redis]\naddress = 127.0.0.1:6379\nmaster_name = m\n"
                 "sentinels = 127.0.0.1:26379\n",
                 "7: [redis] sentinels: address and sentinels are mutually exclusive");
    expect_error(MINIMAL "[harvest]\ntarpit_max = 120\n",
                 "5: [harvest] tarpit_max: 120s is not below Postfix's "
                 "smtpd_policy_service_timeout (100s); Postfix would give up first");
    /* default tarpit_max, lowered postfix_timeout: the line of the latter */
    expect_error(MINIMAL "[harvest]\n\npostfix_timeout = 29.5\n",
                 "6: [harvest] tarpit_max: 30s is not below Postfix's "
                 "smtpd_policy_service_timeout (29.5s); Postfix would give up first");
    /* the Redis read and the directory come before the delay */
    expect_error(MINIMAL "[redis]\naddress = 127.0.0.1:6379\ntimeout = 0.5\n"
                 "[harvest]\ntarpit_max = 99.5\n",
                 "8: [harvest] tarpit_max: 99.5s plus 0.5s is not below Postfix's "
                 "smtpd_policy_service_timeout (100s); Postfix would give up first "
                 "(the plus: [redis] timeout and [ldap] timeout, spent before the delay)");
    expect_error("[directory]\ndomains = example.com\nbackend = ldap\n"
                 "[ldap]\nuri = ldap://127.0.0.1\nbase = dc=example,dc=com\n"
                 "timeout = 2\n[harvest]\ntarpit_max = 98\n",
                 "9: [harvest] tarpit_max: 98s plus 2s is not below Postfix's "
                 "smtpd_policy_service_timeout (100s); Postfix would give up first "
                 "(the plus: [redis] timeout and [ldap] timeout, spent before the delay)");
    config_free(expect_ok("[directory]\ndomains = example.com\nbackend = ldap\n"
                          "[ldap]\nuri = ldap://127.0.0.1\nbase = dc=example,dc=com\n"
                          "timeout = 2\n[harvest]\ntarpit_max = 97.9\n"));
    /* the evidence model's keys */
    {
        struct config *cfg = expect_ok(MINIMAL "[harvest]\ntarpit_share = 30%\n"
                                       "block_share = 55\ntraps = Trap@Example.COM, "
                                       "HoneyPot@\ndry_run = yes\n"
                                       "[actions]\ndry_run = yes\n");
        assert_int_equal(cfg->harvest.tarpit_share, 30);
        assert_int_equal(cfg->harvest.block_share, 55);
        assert_int_equal(cfg->harvest.traps.n, 2);
        assert_string_equal(cfg->harvest.traps.v[0], "trap@example.com");
        assert_string_equal(cfg->harvest.traps.v[1], "honeypot@");
        assert_true(cfg->harvest.dry_run);
        assert_true(cfg->actions.dry_run);
        assert_int_equal(cfg->harvest.ipv4_wide_prefix, 24);
        assert_int_equal(cfg->harvest.ipv6_wide_prefix, 48);
        assert_int_equal(cfg->harvest.block_ceiling, 200);
        config_free(cfg);
    }
    expect_error(MINIMAL "[harvest]\ntarpit_share = 101%\n",
                 "5: [harvest] tarpit_share: out of range (0..100): '101%'");
    expect_error(MINIMAL "[harvest]\ntraps = nobody\n",
                 "5: [harvest] traps: want local@domain or local@: 'nobody'");
    expect_error(MINIMAL "[ldap]\nreferrals = follow\n",
                 "5: [ldap] referrals: expected ignore or tempfail: 'follow'");
    /* a prefix too long for the keys is refused, naming the key */
    expect_error(MINIMAL "[redis]\nprefix = "
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                 "5: [redis] prefix: longer than 64 bytes");
    expect_error(MINIMAL "[harvest]\ntarpit_delay = 31\n",
                 "5: [harvest] tarpit_delay: 31s is above tarpit_max (30s)");
    expect_error(MINIMAL "[server]\nline_limit = 8192\nrequest_limit = 4096\n",
                 "6: [server] request_limit: 4096 is below line_limit (8192)");
    /* harvest off: its schedule is not checked */
    config_free(expect_ok(MINIMAL "[harvest]\nenabled = no\ntarpit_max = 200\n"));
    /* block_after 0 (no blocking) and tarpit_after >= block_after are allowed */
    config_free(expect_ok(MINIMAL "[harvest]\nblock_after = 0\n"));
    config_free(expect_ok(MINIMAL "[harvest]\ntarpit_after = 30\n"));
}

static void test_bind_pw_file(void **state)
{
    char pw[128], text[512], want[600], err[512], path[128];
    struct config *cfg;

    (void) state;
    write_file(pw, sizeof(pw), "pa ss;word\r\n\n");
    snprintf(text, sizeof(text), MINIMAL "[ldap]\nbind_dn = cn=x\nbind_pw_file = %s\n",
             pw);
    cfg = expect_ok(text);
    assert_string_equal(cfg->ldap.bind_pw, "pa ss;word");
    config_free(cfg);

    /* no trailing newline */
    write_file(pw, sizeof(pw), "nonl");
    snprintf(text, sizeof(text), MINIMAL "[ldap]\nbind_dn = cn=x\nbind_pw_file = %s\n",
             pw);
    cfg = expect_ok(text);
    assert_string_equal(cfg->ldap.bind_pw, "nonl");
    config_free(cfg);

    /* empty */
    write_file(pw, sizeof(pw), "\n");
    snprintf(text, sizeof(text), MINIMAL "[ldap]\nbind_dn = cn=x\nbind_pw_file = %s\n",
             pw);
    cfg = load(text, path, sizeof(path), err, sizeof(err));
    assert_null(cfg);
    snprintf(want, sizeof(want), "%s:6: [ldap] bind_pw_file: '%s' is empty", path, pw);
    assert_string_equal(err, want);

    /* two lines */
    write_file(pw, sizeof(pw), "a\nb\n");
    snprintf(text, sizeof(text), MINIMAL "[ldap]\nbind_dn = cn=x\nbind_pw_file = %s\n",
             pw);
    assert_null(load(text, path, sizeof(path), err, sizeof(err)));
    snprintf(want, sizeof(want), "%s:6: [ldap] bind_pw_file: '%s' must hold the "
             "password on one line", path, pw);
    assert_string_equal(err, want);

    /* unreadable */
    snprintf(text, sizeof(text), MINIMAL "[ldap]\nbind_dn = cn=x\n"
             "bind_pw_file = %s/missing\n", tmpdir);
    assert_null(load(text, path, sizeof(path), err, sizeof(err)));
    snprintf(want, sizeof(want), "%s:6: [ldap] bind_pw_file: cannot open "
             "'%s/missing': No such file or directory", path, tmpdir);
    assert_string_equal(err, want);
}

static void digest_of(const char *text, char out[17])
{
    struct config *cfg = expect_ok(text);

    assert_int_equal(strlen(config_directory_digest(cfg)), 16);
    memcpy(out, config_directory_digest(cfg), 17);
    config_free(cfg);
}

static void test_digest(void **state)
{
    char base[17], other[17];

    (void) state;
    digest_of(MINIMAL "[ldap]\nfilter = (mail=%s)\n", base);
    for (int i = 0; i < 16; i++)
        assert_non_null(strchr("0123456789abcdef", base[i]));

    digest_of(MINIMAL "[ldap]\nfilter = (mail=%s)\n[server]\nmax_connections = 7\n",
              other);
    assert_string_equal(base, other);
    digest_of(MINIMAL "[ldap]\nfilter = (mail=%s)\n[harvest]\nblock_after = 3\n"
              "[actions]\nunknown = REJECT\n", other);
    assert_string_equal(base, other);
    /* the same settings spelled differently */
    digest_of("[directory]\nfile = /dev/null\ndomains = EXAMPLE.com.\n", other);
    assert_string_equal(base, other);

    digest_of(MINIMAL "[ldap]\nfilter = (uid=%u)\n", other);
    assert_string_not_equal(base, other);
    digest_of(MINIMAL "[directory]\nrecipient_delimiter = -\n", other);
    assert_string_not_equal(base, other);
    digest_of(MINIMAL "[directory]\nrecipient_delimiter =\n", other);
    assert_string_not_equal(base, other);
    digest_of(MINIMAL "[directory]\nignore_case = no\n", other);
    assert_string_not_equal(base, other);
    digest_of(MINIMAL "[ldap]\nscope = one\n", other);
    assert_string_not_equal(base, other);
    digest_of(MINIMAL "[ldap]\nbase = dc=x\n", other);
    assert_string_not_equal(base, other);
    digest_of(MINIMAL "[ldap]\nuri = ldap://127.0.0.1\n", other);
    assert_string_not_equal(base, other);
    digest_of("[directory]\nfile = /dev/zero\ndomains = example.com\n", other);
    assert_string_not_equal(base, other);
    digest_of("[directory]\nfile = /dev/null\ndomains = example.com example.org\n",
              other);
    assert_string_not_equal(base, other);
}

static void test_sample_config(void **state)
{
    char err[512];
    struct config *cfg;

    (void) state;
    /* conf/policyd.conf must load as shipped (run from the top directory) */
    if (access("conf/policyd.conf", R_OK) != 0)
        skip();
    cfg = config_load("conf/policyd.conf", err, sizeof(err));
    if (!cfg)
        fail_msg("%s", err);
    assert_string_equal(cfg->directory.backend, "file");
    assert_string_equal(cfg->directory.file, "conf/recipients");
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_roundtrip),
        cmocka_unit_test(test_redis_address),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_number_errors),
        cmocka_unit_test(test_bool_and_enum_errors),
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_duration_errors),
        cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_dialect),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_cross_checks),
        cmocka_unit_test(test_bind_pw_file),
        cmocka_unit_test(test_digest),
        cmocka_unit_test(test_sample_config),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
