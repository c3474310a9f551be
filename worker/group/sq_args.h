/*  sq_args: parsing of shardq-worker's numeric flags, shared by the
 *  one-shot mode and the broker mode. Each prints one message naming the
 *  flag and the accepted range on stderr and returns -1 on a bad value
 *  (the caller exits with the usage code), 0 otherwise.
 */
#ifndef SQ_ARGS_H
#define SQ_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

int sq_args_int(const char *flag, const char *v, long lo, long hi, int *out);
int sq_args_float(const char *flag, const char *v, double lo, double hi, float *out);
int sq_args_u64(const char *flag, const char *v, uint64_t *out);
/* --device: "cpu", "cuda" or "auto" into *device (borrowed from v) */
int sq_args_device(const char *flag, const char *v, const char **device);
/* --kv-type: "f16", "f32" or "q8_0" into *kv_type (sq_kv_type_t) */
int sq_args_kv_type(const char *flag, const char *v, int *kv_type);
/* argv[*i] as "--flag=value" or "--flag value" (then *i moves past the
 * value), *value borrowed from argv. flags: the n names that take a value
 * (a caller's table indexed by its own enum, so each name is written
 * once). Returns the flag's index in flags, or -1 (reported) when it is
 * not one of them, wherever it stands, or its value is missing. */
int sq_args_flag_value(int argc, char **argv, int *i, const char *const *flags, int n,
                       const char **value);
/* --help/-h (usage(stdout)) or --version: 1 when a was one of them and its
 * answer is printed, else 0. */
int sq_args_help_version(const char *a, void (*usage)(FILE *));

#endif
