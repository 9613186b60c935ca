/*
 * siege - a domain's siege state machine (see siege.h)
 */

#include "siege.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double siege_trigger(const struct siege_rules *r, const struct siege_domain *d)
{
    double learned = r->baseline_factor * d->baseline;

    return learned > r->threshold ? learned : r->threshold;
}

/* learn - fold one rate seen outside a siege into the baseline */
static void learn(const struct siege_rules *r, struct siege_domain *d, double rate,
                  uint64_t now_ms)
{
    double keep;

    if (!d->seen_ms || now_ms <= d->seen_ms || !r->baseline_half_life_ms)
        return;
    keep = exp2(-(double)(now_ms - d->seen_ms) / (double)r->baseline_half_life_ms);
    d->baseline = d->baseline * keep + rate * (1.0 - keep);
}

/* turn - our own automatic begin (on) or end, to publish */
static unsigned turn(struct siege_domain *d, int on, uint64_t now_ms)
{
    d->m.on = on;
    d->m.changed_ms = now_ms;
    d->m.hold_until_ms = 0;
    d->below_since_ms = 0;
    return (on ? SIEGE_BEGAN : SIEGE_ENDED) | SIEGE_PUBLISH;
}

unsigned siege_observe(const struct siege_rules *r, struct siege_domain *d,
                       double rate, const struct siege_mark *fleet, uint64_t now_ms)
{
    unsigned ev = 0;
    double trigger;
    int held;

    if (fleet && fleet->changed_ms > d->m.changed_ms) {
        if (fleet->on != d->m.on)
            ev |= fleet->on ? SIEGE_BEGAN : SIEGE_ENDED;
        d->m = *fleet;
        d->below_since_ms = 0;
    }
    trigger = siege_trigger(r, d);      /* from the baseline before this rate */
    held = d->m.hold_until_ms > now_ms;
    if (!d->m.on) {
        if (rate > trigger && !held) {
            ev |= turn(d, 1, now_ms);
        } else {
            learn(r, d, rate, now_ms);  /* an attack never teaches the baseline */
        }
    } else if (rate < trigger * r->low_pct / 100.0) {
        if (!d->below_since_ms)
            d->below_since_ms = now_ms;
        if (now_ms - d->below_since_ms >= r->cooldown_ms && !held)
            ev |= turn(d, 0, now_ms);
    } else {
        d->below_since_ms = 0;          /* hysteresis: the quiet must be unbroken */
    }
    d->rate = rate;
    d->seen_ms = now_ms;
    return ev;
}

unsigned siege_force(struct siege_domain *d, int on, uint64_t hold_ms, uint64_t now_ms)
{
    unsigned ev = SIEGE_PUBLISH;

    if (on != d->m.on)
        ev |= on ? SIEGE_BEGAN : SIEGE_ENDED;
    /* a later change than any seen, so every policyd adopts it */
    d->m.changed_ms = now_ms > d->m.changed_ms ? now_ms : d->m.changed_ms + 1;
    d->m.on = on;
    d->m.hold_until_ms = hold_ms ? now_ms + hold_ms : 0;
    d->below_since_ms = 0;
    return ev;
}

double siege_window_rate(const long long *b, unsigned n, double frac, uint64_t window_ms)
{
    double sum = 0;

    if (n == 0 || window_ms == 0)
        return 0;
    for (unsigned i = 0; i + 1 < n; i++)
        sum += (double)b[i];
    if (n > 1)
        sum += (double)b[n - 1] * (1.0 - frac);
    return sum * 60000.0 / (double)window_ms;
}

size_t siege_mark_encode(const struct siege_mark *m, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%d %llu %llu", m->on ? 1 : 0,
                     (unsigned long long)m->changed_ms,
                     (unsigned long long)m->hold_until_ms);

    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

int siege_mark_decode(const char *buf, size_t len, struct siege_mark *m)
{
    char tmp[SIEGE_WIRE_MAX];
    unsigned long long changed, hold;
    int on, used = 0;

    memset(m, 0, sizeof(*m));
    if (!buf || len == 0 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, buf, len);
    tmp[len] = '\0';
    if (sscanf(tmp, "%d %llu %llu%n", &on, &changed, &hold, &used) != 3
        || (size_t)used != len || (on != 0 && on != 1) || tmp[0] == ' '
        || strchr(tmp, '-'))
        return -1;
    m->on = on;
    m->changed_ms = changed;
    m->hold_until_ms = hold;
    return 0;
}
