#ifndef BACKENDS_STORE_MEM_H
#define BACKENDS_STORE_MEM_H

/*
 * store_mem - counters in process memory
 *
 * The embedded default, and store_redis's fallback while Redis is away.
 * Holds at most max_entries counters (least recently used evicted first).
 * It caches no answers: get always misses and set is dropped, because the
 * in-process answer cache (policyd/cache.c, L1) already is that layer and
 * a second copy in the same process would only cost memory.
 */

#include <stddef.h>

#include "store.h"

struct store *store_mem_new(size_t max_entries);

#endif
