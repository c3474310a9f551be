/*  sq_clock: the monotonic clock in milliseconds, for deadlines and
 *  timeouts (never for timestamps that are stored or shown).
 */
#ifndef SQ_CLOCK_H
#define SQ_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t
sq_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
