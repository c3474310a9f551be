/*  sq_args: strict number parsing for command-line flags (no trailing
 *  junk, no silent overflow, range named in the message). */
#include "sq_args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_model.h"
#include "sq_parse.h"
#include "sq_version.h"

int sq_args_int(const char *flag, const char *v, long lo, long hi, int *out)
{
    long long x;
    if (sq_parse_flag_int("shardq-worker", flag, v, lo, hi, &x))
        return -1;
    *out = (int)x;
    return 0;
}

int sq_args_float(const char *flag, const char *v, double lo, double hi, float *out)
{
    double x;
    if (sq_parse_flag_num("shardq-worker", flag, v, lo, hi, &x))
        return -1;
    *out = (float)x;
    return 0;
}

int sq_args_flag_value(int argc, char **argv, int *i, const char *const *flags, int n,
                       const char **value)
{
    const char *a = argv[*i], *eq = strchr(a, '=');
    const size_t len = eq ? (size_t)(eq - a) : strlen(a);
    /* known before the value is looked for: an unknown flag last on the
     * line is unknown, not one that lacks a value */
    int k = 0;
    while (k < n && !(flags[k] && strlen(flags[k]) == len && !strncmp(a, flags[k], len)))
        k++;
    if (k == n) { /* (--json=1: a switch given a value) */
        fprintf(stderr, "shardq-worker: unknown option %.*s%s (see --help)\n",
                len > 64 ? 64 : (int)len, a, eq ? ", or one that takes no value" : "");
        return -1;
    }
    if (eq) {
        *value = eq + 1;
        return k;
    }
    if (*i + 1 >= argc) {
        fprintf(stderr, "shardq-worker: %s needs a value (see --help)\n", a);
        return -1;
    }
    *value = argv[++*i];
    return k;
}

int sq_args_help_version(const char *a, void (*usage)(FILE *))
{
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        usage(stdout);
        return 1;
    }
    if (!strcmp(a, "--version")) {
        printf("shardq-worker %s\n", SQ_VERSION);
        return 1;
    }
    return 0;
}

int sq_args_device(const char *flag, const char *v, const char **device)
{
    if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto")) {
        fprintf(stderr, "shardq-worker: %s: '%s' is not cpu, cuda or auto\n", flag, v);
        return -1;
    }
    *device = v;
    return 0;
}

int sq_args_kv_type(const char *flag, const char *v, int *kv_type)
{
    int t = sq_kv_type_parse(v);
    if (t < 0) {
        fprintf(stderr, "shardq-worker: %s: '%s' is not f16, f32 or q8_0\n", flag, v);
        return -1;
    }
    *kv_type = t;
    return 0;
}

int sq_args_u64(const char *flag, const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || end == v || v[0] == '-') {
        fprintf(stderr, "shardq-worker: %s: '%s' is not a non-negative integer\n", flag, v);
        return -1;
    }
    *out = x;
    return 0;
}
