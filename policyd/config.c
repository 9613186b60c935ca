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
 *	the config_keys[] table (config_keys.c): section, type, range, checker.  A
 *	value is converted and checked when its line is seen, so the error
 *	names that line; checks between keys run after the whole file
 *	(config_cross_check, config_check.c) and name the line where the key was set, or
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
#include "config_priv.h"
#include "log.h"
#include "util.h"

static const char *const sections[] = {
    "server", "directory", "actions", "ldap", "redis", "cache", "harvest", "siege",
    "stats", NULL
};

/* ---- small helpers ---- */

/* config_quote - 'value' for a message: escaped, cut at CONFIG_QUOTE_MAX. */
const char *config_quote(const char *s, char *out, size_t outlen)
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
int config_fail(struct config_ctx *c, unsigned line,
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
const char *config_secs(uint64_t ms, char *out, size_t outlen)
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

int config_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f)
            return 0;
    return 1;
}

void config_strlist_clear(struct strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void config_strlist_add(struct strlist *l, const char *s)
{
    l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = xstrdup(s);
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
        config_strlist_add(l, item);
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
            config_strlist_clear(l);   /* given twice: the later wins */
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
    if (!(k = config_key_find(section, name))) {
        if (!config_known_section(section, strlen(section)))
            config_fail(c, c->lineno, NULL, "[%s]: unknown section", section);
        else
            config_fail(c, c->lineno, NULL, "[%s] %s: unknown key", section, name);
        return 0;
    }
    if (config_set(c, k, value, cont) < 0)
        return 0;
    if (!cont)
        c->lines[k - config_keys] = c->lineno;
    return 1;
}

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
    unsigned lines[CONFIG_KEYS_MAX];
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
    config_strlist_clear(&cfg->server.listen);
    free(cfg->server.control);
    free(cfg->server.user);
    free(cfg->directory.backend);
    free(cfg->directory.file);
    config_strlist_clear(&cfg->directory.domains);
    free(cfg->directory.recipient_delimiter);
    free(cfg->actions.unknown);
    free(cfg->actions.tempfail);
    free(cfg->actions.blocked);
    free(cfg->actions.siege);
    config_strlist_clear(&cfg->ldap.uri);
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
    config_strlist_clear(&cfg->redis.sentinels);
    free(cfg->redis.master_name);
    config_strlist_clear(&cfg->harvest.whitelist);
    config_strlist_clear(&cfg->harvest.traps);
    free(cfg->stats.prometheus);
    free(cfg);
}
