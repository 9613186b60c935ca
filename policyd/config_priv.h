#ifndef POLICYD_CONFIG_PRIV_H
#define POLICYD_CONFIG_PRIV_H

/*
 * config_priv - what the three parts of the config loader share:
 * config.c (reading and setting values), config_keys.c (the key table,
 * checkers and defaults) and config_check.c (checks between keys, digest).
 * Not for any other module: the rest of policyd sees only config.h.
 */

#include <stddef.h>
#include <stdint.h>

#include "config.h"

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


#define CONFIG_KEYS_MAX 128     /* keys in the table at most (checked there) */

extern const struct key_def config_keys[];
extern const size_t config_nkeys;

/* config.c */
const char *config_quote(const char *s, char *out, size_t outlen);
int config_fail(struct config_ctx *c, unsigned line, const struct key_def *k,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
const char *config_secs(uint64_t ms, char *out, size_t outlen);
int config_printable(const char *s);
void config_strlist_clear(struct strlist *l);
void config_strlist_add(struct strlist *l, const char *s);

/* config_keys.c */
const struct key_def *config_key_find(const char *section, const char *name);
unsigned config_key_line(const struct config_ctx *c, const char *section,
                         const char *name);
struct config *config_defaults(const char *path);

/* config_check.c */
int config_cross_check(struct config_ctx *c);
void config_digest(struct config *cfg);

#endif
