#ifndef BACKENDS_DIRECTORY_H
#define BACKENDS_DIRECTORY_H

/*
 * directory - does a recipient exist?
 *
 * The interface the policy asks through; the embedded file (dir_file.c) and
 * LDAP (dir_ldap.c) implement it.  directory_new() picks the backend from
 * [directory] backend.  A lookup answers through its callback exactly once,
 * possibly before directory_lookup() returns (the file backend does).
 * Callers that ask the same address concurrently are coalesced above this
 * layer (policyd/lookup.c), not here.
 *
 * directory_free() may be called with queries in flight: each gets its
 * callback with DIR_TEMPFAIL first.
 */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../policyd/address.h"
#include "../policyd/config.h"

enum dir_status {
    DIR_FOUND = 1,
    DIR_NOTFOUND = 0,
    DIR_TEMPFAIL = -1,
};

typedef void directory_cb(void *arg, enum dir_status st);

struct directory;

struct directory_ops {
    const char *name;
    void (*lookup)(struct directory *d, const struct address *a,
                   directory_cb *cb, void *arg);
    /* check: bind (or open) and answer one lookup, blocking; for -T only. */
    int (*check)(struct directory *d, const struct address *a,
                 char *msg, size_t msglen);
    void (*free)(struct directory *d);
};

/* Every backend's struct starts with this.  content_tag changes when the
 * backend's answers may change without a config change (the file backend
 * hashes its file); cache keys include it.  0 when not applicable. */
struct directory {
    const struct directory_ops *ops;
    uint64_t content_tag;
};

struct directory *directory_new(uv_loop_t *loop, const struct config *cfg,
                                char *err, size_t errlen);

static inline void directory_lookup(struct directory *d, const struct address *a,
                                    directory_cb *cb, void *arg)
{
    d->ops->lookup(d, a, cb, arg);
}

static inline void directory_free(struct directory *d)
{
    if (d)
        d->ops->free(d);
}

const char *directory_status_str(enum dir_status st);

#endif
