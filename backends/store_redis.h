#ifndef BACKENDS_STORE_REDIS_H
#define BACKENDS_STORE_REDIS_H

/*
 * store_redis - the shared store in Redis (hiredis async on the libuv loop)
 *
 * store_redis_new() connects in the background and returns at once; until
 * the connection is up (and whenever it is lost) the store degrades instead
 * of failing: get answers STORE_ERR (the caller asks the directory), set is
 * dropped, and incr/peek/del are served by FALLBACK, a store_mem that this
 * store owns from the call on (also on failure: it is freed then).
 *
 * [redis] address is host:port, [v6]:port or unix:/path; with sentinels set
 * the master is found through Redis Sentinel (master_name) instead, and
 * found again after a failover.  The settings are copied: cfg may be freed
 * after the call.
 *
 * free: every command still in flight gets its callback with STORE_ERR
 * before free returns, and no callback runs after.  The last bytes of the
 * store are released by libuv close callbacks, so run the loop once more
 * after free (uv_run) before uv_loop_close().
 */

#include <stddef.h>
#include <uv.h>

#include "../policyd/config.h"
#include "store.h"

struct store *store_redis_new(uv_loop_t *loop, const struct config *cfg,
                              struct store *fallback, char *err, size_t errlen);

#endif
