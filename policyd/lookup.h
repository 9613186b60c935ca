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
 * The chain is two calls, so the caller can do other work between them
 * (policy.c reads the client's harvest counter at the same time as the
 * cache, and asks the directory only for a client that is not blocked):
 *
 *   lookup_cached()     L1, then the store: found, not found, or LOOKUP_MISS
 *   lookup_directory()  the directory, with write-back to the store and L1
 *
 * An address with an extension (address.h: bare_len) is asked as given
 * first and, when the directory does not know it, without its extension,
 * as Postfix's table lookups do: first-last@ exists even with "-" as a
 * delimiter, and so does plain-ext@ when plain@ does.  The form without
 * the extension goes through the whole chain itself (L1, store, directory)
 * and its answer is cached under its own address, where every other
 * extension of it finds it.  The answer cached under an address is always
 * the chain's answer for that address: for a+b@ it is "a+b@ or a@".  A
 * tempfail of either ask is the answer, and is never cached.
 *
 * Concurrent directory asks for one normalized address share one query: the
 * first creates a pending entry, later ones wait on it, and all are answered
 * together.  Store keys are PREFIX "c:" DIGEST TAG ":" ADDRESS, with the
 * whole [redis] prefix (at most CONFIG_PREFIX_MAX bytes), where DIGEST
 * covers the directory settings (delimiters and case included) and TAG the
 * directory's content tag, so a changed filter, base or recipient file
 * never serves old answers.
 *
 * Limit: lookup_flush of an address drops that key only; answers cached
 * for its extensions (a+b@ after a@ is flushed) live on until their TTL,
 * or until "flush *".
 *
 * The caller provides the waiter's storage (struct lookup_wait, embedded in
 * its job) so a lookup allocates nothing on a cache hit or a coalesced wait.
 * Callbacks may run before the call returns (an L1 hit, or a synchronous
 * backend).
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
    struct lookup *lk;          /* lookup_cached: where to fill L1 */
    const char *addr;           /* lookup_cached: the caller's address */
};

/* store may be NULL (no shared cache); neither dir nor store is owned. */
struct lookup *lookup_new(const struct config *cfg, struct directory *dir,
                          struct store *store);
void lookup_free(struct lookup *lk);

/* LOOKUP_MISS: not in any cache (a lookup_cached answer only) */
#define LOOKUP_MISS ((enum dir_status) -2)

/* lookup_cached - a must stay valid until cb has run (it is the job's);
 * now_ms: util_now_ms(), read by the caller. */
void lookup_cached(struct lookup *lk, const struct address *a, uint64_t now_ms,
                   struct lookup_wait *w, lookup_cb *cb, void *arg);
void lookup_directory(struct lookup *lk, const struct address *a,
                      struct lookup_wait *w, lookup_cb *cb, void *arg);

/* lookup_flush - drop cached answers for one normalized address, or all
 * (addr NULL), in L1 and in the store.  cb gets the store's count. */
void lookup_flush(struct lookup *lk, const char *addr, store_count_cb *cb,
                  void *arg);

#endif
