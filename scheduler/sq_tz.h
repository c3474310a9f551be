/*  sq_tz: IANA time zones read straight from TZif files.
 *
 *  Why not localtime_r under setenv("TZ")?  TZ is process-global, so
 *  switching it is not thread-safe and costs a file read per switch. A
 *  loaded sq_tz_t is immutable and may be shared by threads.
 *
 *  Files come from $TZDIR or /usr/share/zoneinfo. Times after the last
 *  transition in the file follow the POSIX TZ footer rule (TZif v2+), so
 *  "slim" files and dates after 2037 work too.
 *
 *  All times are int64 seconds: `utc` is seconds since the Unix epoch,
 *  `wall` is local civil time counted the same way (as if the zone were
 *  UTC), e.g. wall for 2026-03-08 02:30 local = days*86400 + 9000.
 */
#ifndef SQ_TZ_H
#define SQ_TZ_H

#include <stdint.h>

typedef struct sq_tz_t sq_tz_t;

/* Load zone `name` ("Asia/Shanghai", "UTC"). NULL on error (SQ_FAIL
 * detail names the zone and the problem). */
sq_tz_t *sq_tz_load(const char *name);
void sq_tz_destroy(sq_tz_t **self_p);
const char *sq_tz_name(const sq_tz_t *self);

/* UTC offset in seconds east of Greenwich at instant utc. */
int32_t sq_tz_offset(const sq_tz_t *self, int64_t utc);

/* How a wall time maps onto instants. */
typedef enum {
    SQ_TZ_UNIQUE = 0,   /* exactly one instant */
    SQ_TZ_GAP,          /* skipped by a forward jump: shifted by the gap */
    SQ_TZ_OVERLAP       /* repeated by a backward jump: the first instant */
} sq_tz_fold_t;

/* The instant for wall time `wall`. In a gap (02:30 on a spring-forward
 * day) the wall time is read with the offset before the jump, i.e. it
 * moves forward by the gap (03:30 DST); in an overlap the earlier of the
 * two instants is returned. *fold (OUT, may be NULL) says which case. */
int64_t sq_tz_to_utc(const sq_tz_t *self, int64_t wall, sq_tz_fold_t *fold);

/* Civil calendar helpers (proleptic Gregorian, days since 1970-01-01). */
int64_t sq_days_from_civil(int64_t y, unsigned m, unsigned d);
void sq_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* 0 = Sunday. */
unsigned sq_weekday_from_days(int64_t days);

/* Parse "2026-11-30T09:30:00Z" (or with +hh:mm offset, or a date only) into
 * UTC seconds. 0 or SQ_EINVAL. */
int sq_time_parse_iso(const char *text, int64_t *utc);
/* Format utc as "2026-11-30T09:30:00Z" into buf (>= 21 bytes). */
char *sq_time_format_iso(int64_t utc, char *buf, unsigned size);

#endif
