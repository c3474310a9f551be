/*  shardq-bench-engine: how fast the CPU engine is, next to the machine's
 *  limits and to llama.cpp.
 *
 *  Prints markdown tables: memory read bandwidth per thread count, matmul
 *  throughput per dtype and SIMD level (with the share of the bandwidth
 *  roofline a GEMV reaches).
 *
 *  usage: shardq-bench-engine [--threads 1,2]
 *  exit codes: 0 done, 2 bad usage.
 */
#define _GNU_SOURCE
#include "bench_engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#define S_MAX_POOLS 4

static void
s_usage(FILE *out)
{
    fprintf(out, "usage: shardq-bench-engine [--threads LIST]\n"
                 "  --threads LIST  comma-separated thread counts (default 1,2)\n");
}

/* "1,2" -> {1, 2}; returns the count, or -1 on a bad list. */
static int
s_parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 256 || n == max || (*end && *end != ','))
            return -1;
        out[n++] = (int) v;
        s = *end ? end + 1 : end;
    }
    return n;
}

static void
s_header(void)
{
    struct utsname u;
    uname(&u);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("# shardq-bench-engine\n\n%s, %s %s, SIMD level %s\n", date, u.sysname, u.machine,
           sq_cpu_simd_level());
}

int
main(int argc, char **argv)
{
    int n_threads[S_MAX_POOLS] = {1, 2};
    int n_pools = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            n_pools = s_parse_list(argv[++i], n_threads, S_MAX_POOLS);
            if (n_pools < 1) {
                fprintf(stderr, "shardq-bench-engine: bad --threads list '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--help") == 0) {
            s_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "shardq-bench-engine: unknown argument '%s'\n", argv[i]);
            s_usage(stderr);
            return 2;
        }
    }
    s_header();
    sq_threadpool_t *pools[S_MAX_POOLS] = {0};
    double bw[S_MAX_POOLS] = {0};
    printf("\n## memory read bandwidth\n\n| threads | GB/s |\n|---|---|\n");
    for (int p = 0; p < n_pools; p++) {
        pools[p] = sq_threadpool_new(n_threads[p]);
        if (!pools[p]) {
            fprintf(stderr, "shardq-bench-engine: cannot start %d threads\n", n_threads[p]);
            return 1;
        }
        bw[p] = bench_read_bandwidth_gbs(pools[p]);
        printf("| %d | %.1f |\n", n_threads[p], bw[p]);
        fflush(stdout);
    }
    bench_kernels_table(pools, n_threads, n_pools, bw);
    for (int p = 0; p < n_pools; p++)
        sq_threadpool_destroy(&pools[p]);
    return 0;
}
