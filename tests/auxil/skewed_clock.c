/* A host whose wall clock is off: CLOCK_REALTIME (and gettimeofday, time) read SKEWED_CLOCK_OFFSET_S seconds
   ahead (or behind, if negative); every other clock, the monotonic one included, is left as it is, so timers,
   sleeps and timeouts behave as on any host. Loaded with LD_PRELOAD by tests/auxil/services.skewed_clock_env. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long offset_ns(void) {
    const char *text = getenv("SKEWED_CLOCK_OFFSET_S");
    return text == NULL ? 0 : (long long)(atof(text) * 1e9);
}

int clock_gettime(clockid_t clock, struct timespec *now) {
    static int (*real)(clockid_t, struct timespec *) = NULL;
    if (real == NULL) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int result = real(clock, now);
    if (result == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) {
        long long total = (long long)now->tv_sec * 1000000000LL + now->tv_nsec + offset_ns();
        now->tv_sec = (time_t)(total / 1000000000LL);
        now->tv_nsec = (long)(total % 1000000000LL);
    }
    return result;
}

int gettimeofday(struct timeval *restrict now, void *restrict zone) {
    (void)zone;
    struct timespec precise;
    int result = clock_gettime(CLOCK_REALTIME, &precise);
    if (result == 0 && now != NULL) {
        now->tv_sec = precise.tv_sec;
        now->tv_usec = precise.tv_nsec / 1000;
    }
    return result;
}

time_t time(time_t *now) {
    struct timespec precise;
    clock_gettime(CLOCK_REALTIME, &precise);
    if (now != NULL) *now = precise.tv_sec;
    return precise.tv_sec;
}
