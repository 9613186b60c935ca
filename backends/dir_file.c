/*
 * dir_file - the embedded recipient list (see dir_file.h)
 */

#include "dir_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../policyd/cache.h"
#include "../policyd/util.h"

struct dir_file {
    struct directory base;
    struct cache *table;        /* normalized address or "@domain" -> 1 */
};

/* tag_add - order-independent digest of the entries: a sum of FNV-1a
 * hashes, so the same set of addresses gives the same tag. */
static void tag_add(struct dir_file *f, const char *key, size_t klen)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < klen; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ULL;
    }
    f->base.content_tag += h;
}

static void table_add(struct dir_file *f, const char *key, size_t klen)
{
    if (!cache_get(f->table, key, klen, 0, NULL, NULL))
        tag_add(f, key, klen);
    cache_put(f->table, key, klen, 1, 0);
}

static int table_has(struct dir_file *f, const char *key, size_t klen)
{
    return cache_get(f->table, key, klen, 0, NULL, NULL);
}

/* file_answer - the entry for this form (lookup.c asks the form without
 * the extension itself), else the domain's catch-all */
static enum dir_status file_answer(struct dir_file *f, const struct address *a)
{
    if (table_has(f, a->full, strlen(a->full)))
        return DIR_FOUND;
    /* catch-all: the key "@domain" starts at the '@' */
    const char *at = a->domain - 1;
    return table_has(f, at, strlen(at)) ? DIR_FOUND : DIR_NOTFOUND;
}

static void file_lookup(struct directory *d, const struct address *a,
                        directory_cb *cb, void *arg)
{
    cb(arg, file_answer((struct dir_file *)d, a));
}

static int file_check(struct directory *d, const struct address *a,
                      char *msg, size_t msglen)
{
    struct dir_file *f = (struct dir_file *)d;
    snprintf(msg, msglen, "file backend: %zu entries; %s: %s",
             cache_count(f->table), a->full,
             directory_status_str(file_answer(f, a)));
    return 0;
}

static void file_free(struct directory *d)
{
    struct dir_file *f = (struct dir_file *)d;
    cache_free(f->table);
    free(f);
}

static const struct directory_ops file_ops = {
    "file", file_lookup, file_check, file_free,
};

/* load_line - add one trimmed, non-comment line; -1 with a reason. */
static int load_line(struct dir_file *f, const struct config *cfg, char *line,
                     const char **why)
{
    struct address a;
    int rc;

    if (line[0] == '@') {
        /* a catch-all domain: normalize "x@domain" and keep "@domain" */
        char probe[ADDR_MAX];
        if (snprintf(probe, sizeof(probe), "x%s", line) >= (int)sizeof(probe)) {
            *why = "line too long";
            return -1;
        }
        rc = addr_normalize(probe, "", 0, &a);
        if (rc != ADDR_OK) {
            *why = addr_strerror(rc);
            return -1;
        }
        table_add(f, a.domain - 1, strlen(a.domain - 1));
        return 0;
    }
    /* the entry whole: extensions are stripped from what is asked */
    rc = addr_normalize(line, "", cfg->directory.ignore_case, &a);
    if (rc != ADDR_OK) {
        *why = addr_strerror(rc);
        return -1;
    }
    table_add(f, a.full, strlen(a.full));
    return 0;
}

struct directory *dir_file_new(const struct config *cfg, char *err, size_t errlen)
{
    const char *path = cfg->directory.file;
    FILE *fp = fopen(path, "r");
    char line[1024];
    unsigned lineno = 0;

    if (!fp) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct dir_file *f = xcalloc(1, sizeof(*f));
    f->base.ops = &file_ops;
    f->table = cache_new(0);
    while (fgets(line, sizeof(line), fp)) {
        const char *why = NULL;
        size_t len = strlen(line);
        lineno++;
        if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(fp)) {
            why = "line too long";
        } else {
            while (len && strchr(" \t\r\n", line[len - 1]))
                line[--len] = '\0';
            char *p = line + strspn(line, " \t");
            if (*p && *p != '#')
                load_line(f, cfg, p, &why);
        }
        if (why) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
            fclose(fp);
            file_free(&f->base);
            return NULL;
        }
    }
    if (ferror(fp)) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        fclose(fp);
        file_free(&f->base);
        return NULL;
    }
    fclose(fp);
    return &f->base;
}
