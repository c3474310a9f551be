/*  sq_cron: 5-field cron expressions and their next occurrence in a zone.
 *
 *    minute hour day-of-month month day-of-week
 *    "30 9 * * 1-5"   "0-59/15 8-17 * * MON-FRI"   "0 0 1,15 JAN,JUL *"
 *
 *  Fields accept `*`, numbers, names (JAN..DEC, SUN..SAT), ranges `a-b`,
 *  steps `a-b/n`, `a/n` and star-slash-n, and comma lists; day-of-week 7 is Sunday.
 *  The macros @yearly @annually @monthly @weekly @daily @midnight @hourly
 *  are accepted. As in Vixie cron, when both day fields are restricted a
 *  day matches if EITHER matches.
 *
 *  Wall times are read in the zone given to sq_cron_next (sq_tz.h): a
 *  time skipped by a DST jump fires at the same distance after the jump
 *  (02:30 on a spring-forward night fires at 03:30 DST); a time repeated
 *  by a backward jump fires once, at its first occurrence.
 */
#ifndef SQ_CRON_H
#define SQ_CRON_H

#include "sq_tz.h"

#include <stdint.h>

typedef struct {
    uint64_t minutes;   /* bit m set: minute m matches (0..59) */
    uint32_t hours;     /* 0..23 */
    uint32_t mdays;     /* bits 1..31 */
    uint16_t months;    /* bits 1..12 */
    uint8_t wdays;      /* bits 0..6, 0 = Sunday */
    uint8_t mday_star, wday_star; /* field was `*` (or a step over all) */
} sq_cron_t;

/* Parse expr into *out. 0, or SQ_EINVAL with a detail naming the field
 * ("cron \"61 * * * *\": minute: 61 out of range 0-59"). */
int sq_cron_parse(const char *expr, sq_cron_t *out);

/* The first occurrence strictly after `after` (UTC seconds) with wall
 * times read in tz. 0 and *next (OUT), or SQ_ENOTFOUND when nothing
 * matches within 8 years ("0 0 30 2 *"). */
int sq_cron_next(const sq_cron_t *cron, const sq_tz_t *tz, int64_t after, int64_t *next);

#endif
