/*
 * clock_ahead - an LD_PRELOAD shim for tests: CLOCK_REALTIME (the wall
 * clock, what a policyd stamps its merges with) runs CLOCK_AHEAD_MS
 * milliseconds ahead; the monotonic clocks are left alone.  A fleet
 * member whose clock is off, without touching the machine's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

int clock_gettime(clockid_t id, struct timespec *ts)
{
    static int (*next)(clockid_t, struct timespec *);
    const char *ahead = getenv("CLOCK_AHEAD_MS");
    int rc;

    if (!next)
        next = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    rc = next(id, ts);
    if (rc == 0 && id == CLOCK_REALTIME && ahead) {
        long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec
                       + atoll(ahead) * 1000000LL;
        ts->tv_sec = (time_t)(ns / 1000000000LL);
        ts->tv_nsec = (long)(ns % 1000000000LL);
    }
    return rc;
}
