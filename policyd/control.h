#ifndef POLICYD_CONTROL_H
#define POLICYD_CONTROL_H

/*
 * control - the operator's unix socket, spoken to by policyctl(1)
 *
 * One command per connection: the client sends one line, the server answers
 * with "ok\n" or "error\n" followed by the body, and closes.  Commands:
 *
 *   stats [json|prometheus]   counters and histograms
 *   client IP                 that network's count, stage, block time left
 *   unblock IP                forget that network's count and block
 *   flush ADDRESS | flush *   drop cached answers
 *   siege [json]              every domain's siege state (siege_store.h)
 *   siege start|stop DOMAIN [SECONDS]
 *                             begin or end a siege fleet-wide; SECONDS: no
 *                             automatic change for that long
 *   fleet [json]              every policyd on this Redis (fleet.h)
 *   offenders [N] [json]      the N networks with the highest standing
 *   top                       the screen of policyctl top (fleet.h)
 *   reload                    re-read the configuration
 */

#include <stddef.h>
#include <uv.h>

#include "fleet.h"
#include "policy.h"

struct control;

/* reload: main's function that re-reads the config; 0 or -1 with err. */
typedef int control_reload_fn(void *arg, char *err, size_t errlen);

struct control *control_new(uv_loop_t *loop, const char *path, unsigned mode,
                            struct policy *p, struct fleet *fleet,
                            control_reload_fn *reload, void *reload_arg,
                            char *err, size_t errlen);
void control_free(struct control *c);

#endif
