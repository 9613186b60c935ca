/*
 * redis_uv - hiredis's libuv adapter, writing before the loop sleeps
 * (see redis_uv.h)
 */

#include "redis_uv.h"

#include <stdlib.h>

#include <hiredis/adapters/libuv.h>

struct ruv {
    redisAsyncContext *ac;      /* NULL once hiredis let go of it */
    redisLibuvEvents *ev;       /* the adapter's, freed by its cleanup */
    uv_idle_t idle;             /* active: output queued, written before the poll */
    int flushing;               /* inside redisAsyncHandleWrite from idle_cb */
};

static void ruv_add_read(void *priv)
{
    struct ruv *r = priv;

    if (!(r->ev->events & UV_READABLE))
        redisLibuvAddRead(r->ev);
}

static void ruv_del_read(void *priv)
{
    struct ruv *r = priv;

    if (r->ev->events & UV_READABLE)
        redisLibuvDelRead(r->ev);
}

/* poll_write - let the adapter wait until the socket takes more */
static void poll_write(struct ruv *r)
{
    if (!(r->ev->events & UV_WRITABLE))
        redisLibuvAddWrite(r->ev);
}

static void idle_cb(uv_idle_t *h)
{
    struct ruv *r = h->data;

    uv_idle_stop(h);                    /* closed with ac: r->ac is set here */
    r->flushing = 1;
    redisAsyncHandleWrite(r->ac);       /* may free ac: then cleanup ran */
    r->flushing = 0;
}

static void ruv_add_write(void *priv)
{
    struct ruv *r = priv;

    if (r->flushing || !(r->ac->c.flags & REDIS_CONNECTED)) {
        poll_write(r);                  /* full socket, or still connecting */
        return;
    }
    if (r->ev->events & UV_WRITABLE)
        return;                         /* the poll will write it */
    uv_idle_start(&r->idle, idle_cb);
}

static void ruv_del_write(void *priv)
{
    struct ruv *r = priv;

    uv_idle_stop(&r->idle);
    if (r->ev->events & UV_WRITABLE)
        redisLibuvDelWrite(r->ev);
}

static void closed(uv_handle_t *h)
{
    free(h->data);
}

static void ruv_cleanup(void *priv)
{
    struct ruv *r = priv;

    r->ac = NULL;
    redisLibuvCleanup(r->ev);
    uv_close((uv_handle_t *)&r->idle, closed);
}

int ruv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct ruv *r = calloc(1, sizeof(*r));

    if (!r)
        return REDIS_ERR;
    if (redisLibuvAttach(ac, loop) != REDIS_OK) {
        free(r);
        return REDIS_ERR;
    }
    r->ac = ac;
    r->ev = ac->ev.data;
    uv_idle_init(loop, &r->idle);
    r->idle.data = r;
    ac->ev.data = r;
    ac->ev.addRead = ruv_add_read;
    ac->ev.delRead = ruv_del_read;
    ac->ev.addWrite = ruv_add_write;
    ac->ev.delWrite = ruv_del_write;
    ac->ev.cleanup = ruv_cleanup;
    return REDIS_OK;
}
