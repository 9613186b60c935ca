/*
 * redis_uv - hiredis's libuv adapter, writing before the loop sleeps
 *
 * SYNOPSIS
 *	#include "redis_uv.h"
 *
 *	int ruv_attach(redisAsyncContext *ac, uv_loop_t *loop)
 *
 * DESCRIPTION
 *	ruv_attach() attaches ac to loop with hiredis's libuv adapter
 *	(redisLibuvAttach), then stands between hiredis and it: once ac is
 *	connected, a command queued on it is written from a uv_idle handle,
 *	before the loop next polls, and the adapter is asked to poll for
 *	writability only when the socket would not take it all.  An idle
 *	handle, not a prepare one: a prepare handle started from a prepare
 *	callback would wait a turn while the poll blocks; an active idle
 *	handle makes that poll not block, whatever phase started it.
 *	Interest that does not change is not passed on.
 *
 *	Why: the adapter restarts its uv_poll handle at each change of
 *	interest, and libuv does that with an epoll_ctl DEL and an ADD, so
 *	each batch of commands cost four epoll_ctl calls and a wake-up of the
 *	loop for a socket that was writable all along (Redis itself writes
 *	its replies before it sleeps and installs a write handler only for
 *	what a socket did not take).
 *
 *	Until ac is connected, writes wait for writability as the adapter
 *	does (that is how a non-blocking connect completes).
 *
 *	A write may now find the server gone before a poll has said so
 *	(hiredis writes with write(2), not send(MSG_NOSIGNAL)): the program
 *	must ignore SIGPIPE, as policyd's main() does; hiredis then sees
 *	EPIPE and drops the connection as it would have on the read.
 *
 * DIAGNOSTICS
 *	REDIS_OK, or REDIS_ERR when the adapter could not attach or memory
 *	ran out (ac is then the caller's to free, as with redisLibuvAttach).
 */
#ifndef POLICYD_REDIS_UV_H
#define POLICYD_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

int ruv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
