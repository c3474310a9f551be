/*  sq_parse: strict number parsing for command-line flags and the like:
 *  the whole string, base 10, no overflow, inside a range. Returns 0, or
 *  -1 without a message: the caller names what was being parsed (a flag,
 *  a field) and the range.
 */
#ifndef SQ_PARSE_H
#define SQ_PARSE_H

#ifdef __cplusplus
extern "C" {
#endif

/* s as an integer in [lo, hi] into *out */
int sq_parse_int(const char *s, long long lo, long long hi, long long *out);
/* s as a finite number in [lo, hi] into *out */
int sq_parse_num(const char *s, double lo, double hi, double *out);

/* The same for program prog's command-line flag: a bad value prints
 * "PROG: FLAG: 'V' is not an integer in [LO, HI]" (or "a number") on
 * stderr, the one message the programs' flag errors share. */
int sq_parse_flag_int(const char *prog, const char *flag, const char *v, long long lo,
                      long long hi, long long *out);
int sq_parse_flag_num(const char *prog, const char *flag, const char *v, double lo, double hi,
                      double *out);

#ifdef __cplusplus
}
#endif
#endif
