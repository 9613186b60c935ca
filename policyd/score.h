#ifndef POLICYD_SCORE_H
#define POLICYD_SCORE_H

/*
 * score - the harvest model: a client network's standing, and what it earns
 *
 * Pure, like Postfix's anvil: no I/O, no clock of its own (every function is
 * given "now", wall-clock milliseconds), no allocation.  Storage (evidence.c)
 * and timers (policy.c) live elsewhere.
 *
 * A standing is evidence that fades: the invalid and valid recipients a
 * network asked for, and its trap hits, each halving every half-life
 * ([harvest] window), so there is no window edge to burst across.  It also
 * carries the time its block ends.  A network's stage comes from its
 * standing *before* a request, never from the request's own recipient, so a
 * valid and an invalid recipient get the same delay (no timing oracle):
 *
 *   blocked   block_until > now
 *   tarpit    invalid >= tarpit_after and share >= tarpit_share;
 *             delay = tarpit_delay * 2^(invalid - tarpit_after), <= tarpit_max
 *   watch     some invalid recipients, below the tarpit rules
 *   clean     nothing invalid
 *
 * where share = invalid / (invalid + valid).  A block is earned when evidence
 * is recorded (score_block_due): invalid >= block_after with share >=
 * block_share, or invalid >= block_ceiling whatever the share, or a trap hit.
 * Counts compare rounded to the nearest whole recipient, so 20 invalid
 * recipients asked a minute ago still count as 20 while fading begins.
 *
 * The wire form (score_encode / score_decode), shared with the Redis script
 * in store_redis_merge.c, is five decimal fields separated by one blank:
 * "INVALID VALID TRAPS T_MS BLOCK_UNTIL_MS".
 */

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define SCORE_WIRE_MAX 128      /* encoded standing, with its NUL */
#define SCORE_WIRE_FIELDS 5     /* of the wire form */

struct score {
    double invalid;             /* as of t_ms */
    double valid;
    double traps;
    uint64_t t_ms;              /* 0: no evidence */
    uint64_t block_until_ms;    /* 0: never blocked */
};

enum score_level { SCORE_NARROW, SCORE_WIDE, SCORE_LEVELS };

/* The rules of one level. */
struct score_rules {
    unsigned tarpit_after;      /* 0: no tarpit */
    unsigned tarpit_share;      /* percent */
    unsigned block_after;       /* 0: no share-based block */
    unsigned block_share;       /* percent */
    unsigned block_ceiling;     /* 0: no ceiling */
    uint64_t tarpit_delay_ms;
    uint64_t tarpit_max_ms;
    uint64_t block_time_ms;
    uint64_t half_life_ms;
};

enum score_stage { STAGE_CLEAN, STAGE_WATCH, STAGE_TARPIT, STAGE_BLOCKED };

/* Why a network is where it is (for logs and `policyctl client`). */
enum score_why {
    WHY_CLEAN,                  /* no invalid recipients */
    WHY_FEW,                    /* fewer invalid than tarpit_after */
    WHY_SHARE,                  /* enough invalid, share below tarpit_share */
    WHY_TARPIT,                 /* tarpit rules met */
    WHY_BLOCK_SHARE,            /* block: block_after and block_share met */
    WHY_BLOCK_CEILING,          /* block: block_ceiling met */
    WHY_BLOCK_TRAP,             /* block: a trap address was asked */
    WHY_BLOCKED,                /* block in force (reason not known here) */
};

struct score_verdict {
    enum score_stage stage;
    enum score_why why;
    uint64_t delay_ms;          /* tarpit: the delay; else 0 */
    uint64_t ends_ms;           /* blocked: block_until; else 0 */
    double share;               /* invalid share, 0..1 */
};

/* score_rules_of - the rules of one level from [harvest]. */
void score_rules_of(const struct config *cfg, enum score_level level,
                    struct score_rules *out);

/* score_decay - fade s to now (no change if now <= s->t_ms). */
void score_decay(struct score *s, uint64_t now_ms, uint64_t half_life_ms);
/* score_add - s = decay(s) + decay(d), block_until the later of the two,
 * t = now.  d may be a delta (t_ms = now) or a whole standing. */
void score_add(struct score *s, const struct score *d, uint64_t now_ms,
               uint64_t half_life_ms);
/* score_max - each field the larger of s and o, both faded to now. */
void score_max(struct score *s, const struct score *o, uint64_t now_ms,
               uint64_t half_life_ms);

/* score_judge - the stage a standing (already faded to now) earns now. */
void score_judge(const struct score_rules *r, const struct score *s,
                 uint64_t now_ms, struct score_verdict *out);
/* score_share_at_least - s's invalid share, invalid / (invalid + valid),
 * is pct percent or more (a little slack: fading rounds). */
int score_share_at_least(const struct score *s, double pct);
/* score_block_due - after evidence was added: 1 and *why when the standing
 * now earns a block that is not already in force. */
int score_block_due(const struct score_rules *r, const struct score *s,
                    uint64_t now_ms, enum score_why *why);

/* score_encode - the wire form; returns its length (< SCORE_WIRE_MAX). */
size_t score_encode(const struct score *s, char *buf, size_t cap);
/* score_decode - 0, or -1 for anything that is not the wire form (then *s
 * is zeroed).  len bytes, not NUL-terminated. */
int score_decode(const char *buf, size_t len, struct score *s);

const char *score_stage_name(enum score_stage st);
const char *score_why_name(enum score_why why);

#endif
