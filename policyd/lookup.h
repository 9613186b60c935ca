#ifndef POLICYD_LOOKUP_H
#define POLICYD_LOOKUP_H

/*
 * lookup - does this recipient exist?  The cache chain in front of the
 * directory.
 *
 *   L1 (cache.c, in process, [cache] local_size / local_ttl)
 *     -> store (Redis, when configured; positive_ttl / negative_ttl)
 *       -> directory (file or LDAP)
 *
 * Concurrent asks for one normalized address share one trip past L1: the
 * first creates a pending entry, later ones wait on it, and all are answered
 * together.  Directory answers are written back to the store and L1;
 * tempfail is never cached.  Store keys are
 * PREFIX "c:" DIGEST ":" ADDRESS, where DIGEST covers the directory settings
 * and the directory's content tag, so a changed filter, base or recipient
 * file never serves old answers.
 *
 * The caller provides the waiter's storage (struct lookup_wait, embedded in
 * its job) so a lookup allocates nothing on an L1 hit or a coalesced wait.
 * The callback may run before lookup_exists() returns (an L1 hit, or a
 * synchronous backend).
 */

#include "../backends/directory.h"
#include "../backends/store.h"
#include "address.h"
#include "config.h"

struct lookup;

typedef void lookup_cb(void *arg, enum dir_status st);

struct lookup_wait {
    struct lookup_wait *next;
    lookup_cb *cb;
    void *arg;
};

/* store may be NULL (no shared cache); neither dir nor store is owned. */
struct lookup *lookup_new(const struct config *cfg, struct directory *dir,
                          struct store *store);
void lookup_free(struct lookup *lk);

void lookup_exists(struct lookup *lk, const struct address *a,
                   struct lookup_wait *w, lookup_cb *cb, void *arg);

/* lookup_flush - drop cached answers for one normalized address, or all
 * (addr NULL), in L1 and in the store.  cb gets the store's count. */
void lookup_flush(struct lookup *lk, const char *addr, store_count_cb *cb,
                  void *arg);

#endif
