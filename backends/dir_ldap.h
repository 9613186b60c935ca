#ifndef BACKENDS_DIR_LDAP_H
#define BACKENDS_DIR_LDAP_H

/*
 * dir_ldap - the LDAP directory: a pool of asynchronous libldap handles
 *
 * dir_ldap_new() makes [ldap] connections handles.  Each connects, does
 * StartTLS when asked and binds (simple bind, or anonymous) in the libuv
 * thread pool, because libldap's connect, name lookup and TLS handshake
 * block; every phase there is bounded by [ldap] timeout.  Once bound, the
 * handle's descriptor is made non-blocking and watched with uv_poll on the
 * loop thread, searches are sent with ldap_search_ext() and answers
 * collected with ldap_result() and a zero timeout, so the loop never waits
 * on the network, not even on a server that stops reading (what libldap
 * does on a non-blocking descriptor: see ldap_conn.c).
 *
 * A lookup expands [ldap] filter (ldap_filter.c, RFC 4515 escaped),
 * searches base/scope asking for no attributes ("1.1") with size limit 1:
 * an entry (or "size limit exceeded") is DIR_FOUND, none DIR_NOTFOUND,
 * anything else DIR_TEMPFAIL.  Continuation references (Active Directory
 * sends them for its DNS partitions, and for child domains) are not
 * followed: each distinct URL is logged once, naming the search base, and
 * a search that found no entry but got references is DIR_NOTFOUND, or
 * DIR_TEMPFAIL with [ldap] referrals = tempfail.  Each query has a timer of [ldap] timeout
 * from the moment it is asked: on expiry it is abandoned, answered
 * DIR_TEMPFAIL and stats.dir_timeouts counted; if the connection sent
 * nothing at all since that query went out, the connection is considered
 * dead (a stopped or frozen server) and is dropped, failing its other
 * queries at once.  A connection whose writes cannot complete (the server
 * stopped reading) takes no new search and is dropped when a query on it
 * times out.
 *
 * Limits: at most [ldap] max_inflight queries per connection; beyond that
 * queries wait in one queue of at most DIR_LDAP_QUEUE_MAX, and a full
 * queue answers DIR_TEMPFAIL at once.  When no connection is up, lookups
 * answer DIR_TEMPFAIL at once (except during the very first connection
 * attempts after start, when they wait, bounded by their timer).
 *
 * Failure: a connection that fails moves to the next URI of [ldap] uri at
 * once; when every URI failed it waits (100 ms doubling to 10 s) and
 * starts again from the first.  A lost connection reconnects the same way,
 * from the first URI.  Failures are logged when the reason changes, not per
 * attempt or per request.  Coalescing, caching and fail_open are done
 * above this layer.
 *
 * Nothing is contacted before the loop runs, so `policyd -t` never touches
 * the server; the check op (`policyd -T`) binds and searches once,
 * blocking, on a handle of its own.
 *
 * URIs should name IP addresses: a host name is resolved by libldap in the
 * thread pool, which is safe but shares the pool's threads.
 */

#include <stddef.h>
#include <uv.h>

#include "directory.h"

#define DIR_LDAP_QUEUE_MAX 4096         /* queries waiting for a slot */
#define DIR_LDAP_BACKOFF_MIN_MS 100
#define DIR_LDAP_BACKOFF_MAX_MS 10000
#define DIR_LDAP_REFS_MAX 32            /* reference URLs each logged once */

struct directory *dir_ldap_new(uv_loop_t *loop, const struct config *cfg,
                               char *err, size_t errlen);

#endif
