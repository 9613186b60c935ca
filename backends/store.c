/*
 * store - choose the store implementation (see store.h)
 *
 * Process memory unless [redis] names a server or Sentinels; Redis then gets
 * a memory store of its own to count in while Redis is unreachable.
 */

#include "store.h"

#include "store_mem.h"
#include "store_redis.h"

struct store *store_new(uv_loop_t *loop, const struct config *cfg, char *err,
                        size_t errlen)
{
    struct store *mem = store_mem_new(cfg->harvest.max_tracked);

    if (!cfg->redis.address && !cfg->redis.sentinels.n)
        return mem;
    return store_redis_new(loop, cfg, mem, err, errlen);
}
