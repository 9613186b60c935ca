/*
 * score - the harvest model (see score.h)
 */

#include "score.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void score_rules_of(const struct config *cfg, enum score_level level,
                    struct score_rules *out)
{
    const int wide = level == SCORE_WIDE;

    out->tarpit_after = wide ? cfg->harvest.wide_tarpit_after : cfg->harvest.tarpit_after;
    out->tarpit_share = cfg->harvest.tarpit_share;
    out->block_after = wide ? cfg->harvest.wide_block_after : cfg->harvest.block_after;
    out->block_share = cfg->harvest.block_share;
    out->block_ceiling = wide ? cfg->harvest.wide_block_ceiling
                              : cfg->harvest.block_ceiling;
    out->tarpit_delay_ms = cfg->harvest.tarpit_delay_ms;
    out->tarpit_max_ms = cfg->harvest.tarpit_max_ms;
    out->block_time_ms = cfg->harvest.block_time_ms;
    out->half_life_ms = cfg->harvest.window_ms;
}

void score_decay(struct score *s, uint64_t now_ms, uint64_t half_life_ms)
{
    double f;

    if (!s->t_ms || now_ms <= s->t_ms || !half_life_ms) {
        if (!s->t_ms)
            s->t_ms = now_ms;
        return;
    }
    f = exp2(-(double)(now_ms - s->t_ms) / (double)half_life_ms);
    s->invalid *= f;
    s->valid *= f;
    s->traps *= f;
    s->t_ms = now_ms;
}

/* combine - fade s and o to now, then each count = op(s's, o's); the
 * later block and the later time win. */
static void combine(struct score *s, const struct score *o, uint64_t now_ms,
                    uint64_t half_life_ms, double (*op)(double, double))
{
    struct score oo = *o;

    score_decay(s, now_ms, half_life_ms);
    score_decay(&oo, now_ms, half_life_ms);
    s->invalid = op(s->invalid, oo.invalid);
    s->valid = op(s->valid, oo.valid);
    s->traps = op(s->traps, oo.traps);
    if (oo.block_until_ms > s->block_until_ms)
        s->block_until_ms = oo.block_until_ms;
    if (s->t_ms < now_ms)
        s->t_ms = now_ms;
}

static double plus(double a, double b)
{
    return a + b;
}

void score_add(struct score *s, const struct score *d, uint64_t now_ms,
               uint64_t half_life_ms)
{
    combine(s, d, now_ms, half_life_ms, plus);
}

void score_max(struct score *s, const struct score *o, uint64_t now_ms,
               uint64_t half_life_ms)
{
    combine(s, o, now_ms, half_life_ms, fmax);
}

/* whole - a faded count as whole recipients, to the nearest: 20 invalid
 * recipients asked over the last minute are 20, not 19.99 (the fading has
 * barely begun), and a half-faded one counts no more. */
static double whole(double n)
{
    return floor(n + 0.5);
}

static double share_of(const struct score *s)
{
    double total = s->invalid + s->valid;
    return total > 0 ? s->invalid / total : 0;
}

int score_share_at_least(const struct score *s, double pct)
{
    /* invalid/(invalid+valid) >= pct/100, without dividing */
    return s->invalid * 100.0 + 1e-9 >= pct * (s->invalid + s->valid);
}

void score_judge(const struct score_rules *r, const struct score *s,
                 uint64_t now_ms, struct score_verdict *out)
{
    double inv = whole(s->invalid);

    memset(out, 0, sizeof(*out));
    out->share = share_of(s);
    if (s->block_until_ms > now_ms) {
        out->stage = STAGE_BLOCKED;
        out->why = WHY_BLOCKED;
        out->ends_ms = s->block_until_ms;
        return;
    }
    if (inv < 1) {
        out->stage = STAGE_CLEAN;
        out->why = WHY_CLEAN;
        return;
    }
    out->stage = STAGE_WATCH;
    if (!r->tarpit_after || !r->tarpit_delay_ms || inv < r->tarpit_after) {
        out->why = WHY_FEW;
        return;
    }
    if (!score_share_at_least(s, r->tarpit_share)) {
        out->why = WHY_SHARE;
        return;
    }
    out->stage = STAGE_TARPIT;
    out->why = WHY_TARPIT;
    out->delay_ms = r->tarpit_delay_ms;
    for (double n = r->tarpit_after; n < inv && out->delay_ms < r->tarpit_max_ms; n++)
        out->delay_ms *= 2;
    if (out->delay_ms > r->tarpit_max_ms)
        out->delay_ms = r->tarpit_max_ms;
}

int score_block_due(const struct score_rules *r, const struct score *s,
                    uint64_t now_ms, enum score_why *why)
{
    double inv = whole(s->invalid);

    if (s->block_until_ms > now_ms)
        return 0;
    if (whole(s->traps) >= 1)
        *why = WHY_BLOCK_TRAP;
    else if (r->block_ceiling && inv >= r->block_ceiling)
        *why = WHY_BLOCK_CEILING;
    else if (r->block_after && inv >= r->block_after
             && score_share_at_least(s, r->block_share))
        *why = WHY_BLOCK_SHARE;
    else
        return 0;
    return 1;
}

size_t score_encode(const struct score *s, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%.6f %.6f %.6f %llu %llu", s->invalid, s->valid,
                     s->traps, (unsigned long long)s->t_ms,
                     (unsigned long long)s->block_until_ms);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* exact_decimal - the n bytes at p (DIGITS[.[DIGITS]]) as strtod reads
 * them, when that is one IEEE division: at most 15 digits in all make an
 * integer mantissa exact in a double, and 10^k (k <= 15) is exact too, so
 * their quotient is the correctly rounded value strtod gives.  0 for
 * anything longer (strtod then).  Every standing read from Redis is
 * decoded: strtod's general path was a tenth of a Redis hit's CPU. */
static int exact_decimal(const char *p, size_t n, double *out)
{
    static const double pow10[] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
                                    1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15 };
    uint64_t m = 0;
    size_t digits = 0, frac = 0;
    int dot = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '.') {
            dot = 1;
            continue;
        }
        if (++digits > 15)
            return 0;
        m = m * 10 + (uint64_t)(p[i] - '0');
        frac += dot;
    }
    *out = (double)m / pow10[frac];
    return 1;
}

/* field - one non-negative decimal, DIGITS[.[DIGITS]] and nothing else
 * (no sign, exponent, hex, inf or nan): the grammar the merge script's
 * pattern accepts, so C and Lua read any stored value alike.  Advances *p
 * past it and one blank. */
static int field(const char **p, const char *end, double *out, int last)
{
    char tmp[SCORE_WIRE_MAX];
    size_t n = 0, digits = 0;

    while (*p + n < end && (*p)[n] >= '0' && (*p)[n] <= '9')
        n++, digits++;
    if (*p + n < end && (*p)[n] == '.')
        for (n++; *p + n < end && (*p)[n] >= '0' && (*p)[n] <= '9'; n++)
            ;
    if (digits == 0 || n >= sizeof(tmp))
        return -1;
    if (!exact_decimal(*p, n, out)) {
        memcpy(tmp, *p, n);
        tmp[n] = '\0';
        *out = strtod(tmp, NULL);
    }
    if (!isfinite(*out))
        return -1;
    *p += n;
    if (last)
        return *p == end ? 0 : -1;
    if (*p == end || **p != ' ')
        return -1;
    (*p)++;
    return 0;
}

int score_decode(const char *buf, size_t len, struct score *s)
{
    const char *p = buf, *end = buf + len;
    double v[SCORE_WIRE_FIELDS];

    memset(s, 0, sizeof(*s));
    if (len >= SCORE_WIRE_MAX)
        return -1;
    for (int i = 0; i < SCORE_WIRE_FIELDS; i++)
        if (field(&p, end, &v[i], i == SCORE_WIRE_FIELDS - 1) < 0)
            return -1;
    if (v[3] > 1e15 || v[4] > 1e15)
        return -1;
    s->invalid = v[0];
    s->valid = v[1];
    s->traps = v[2];
    s->t_ms = (uint64_t)v[3];
    s->block_until_ms = (uint64_t)v[4];
    return 0;
}

const char *score_stage_name(enum score_stage st)
{
    static const char *names[] = { "clean", "watch", "tarpit", "blocked" };
    return names[st];
}

const char *score_why_name(enum score_why why)
{
    static const char *names[] = {
        "no invalid recipients", "fewer invalid recipients than the tarpit needs",
        "invalid share below the tarpit's", "invalid count and share",
        "invalid count and share", "invalid count at the ceiling",
        "trap address", "block in force",
    };
    return names[why];
}
