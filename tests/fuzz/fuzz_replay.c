/*  fuzz_replay: drives a libFuzzer target without libFuzzer (gcc builds).
 *
 *    fuzz_NAME_replay [-runs=N] [-seed=S] CORPUS...
 *
 *  Runs LLVMFuzzerTestOneInput on every corpus file (directories are read
 *  one level deep), then on N mutants of them: byte flips and interesting
 *  integers written mostly into the first 16 KiB (where GGUF keeps its
 *  counts, lengths and offsets), truncations, inserted and deleted chunks,
 *  splices of two inputs. The same seed gives the same runs, so a crash
 *  (or a sanitizer report, in an SQ_SANITIZE build) is replayed by running
 *  the same command again.
 */
#define _GNU_SOURCE

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sq_test.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_MAX_INPUTS 256
#define S_MAX_SIZE (4u << 20)
#define S_HEAD 16384u

typedef struct {
    uint8_t *data;
    size_t size;
} s_input_t;

static s_input_t s_corpus[S_MAX_INPUTS];
static int s_n_corpus;
static uint64_t s_rng;

static uint64_t s_rand(void)
{
    s_rng ^= s_rng << 13;   /* xorshift64 */
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

static void s_load_file(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > S_MAX_SIZE
        || s_n_corpus == S_MAX_INPUTS)
        return;
    FILE *f = fopen(path, "rb");
    uint8_t *data = malloc((size_t) st.st_size + 1);
    if (f && data && fread(data, 1, (size_t) st.st_size, f) == (size_t) st.st_size) {
        s_corpus[s_n_corpus++] = (s_input_t) { data, (size_t) st.st_size };
        data = NULL;
    }
    free(data);
    if (f)
        fclose(f);
}

static void s_load(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        s_load_file(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        char full[4096];
        if (e->d_name[0] == '.')
            continue;
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        s_load_file(full);
    }
    closedir(d);
}

/* A position, mostly in the head of the file. */
static size_t s_pos(size_t size)
{
    size_t span = s_rand() % 5 != 0 && size > S_HEAD ? S_HEAD : size;
    return span ? (size_t) (s_rand() % span) : 0;
}

static void s_mutate_once(uint8_t *buf, size_t *size, size_t cap)
{
    static const uint64_t interesting[] = {
        0, 1, 2, 3, 4, 7, 8, 9, 31, 32, 33, 127, 255, 256, 0x7fffffff, 0x80000000u, 0xffffffffu,
        UINT64_C(0x100000000), UINT64_C(1) << 40, UINT64_C(1) << 62, UINT64_C(1) << 63,
        UINT64_MAX, UINT64_MAX - 31,
    };
    size_t n = *size;
    switch (s_rand() % 7) {
    case 0:   /* flip bits */
        if (n)
            buf[s_pos(n)] ^= (uint8_t) (1u << (s_rand() % 8));
        break;
    case 1:   /* random byte */
        if (n)
            buf[s_pos(n)] = (uint8_t) s_rand();
        break;
    case 2: { /* an interesting integer of 1, 2, 4 or 8 bytes */
        int w = 1 << (s_rand() % 4);
        uint64_t v = s_rand() % 4 == 0 ? (uint64_t) n + s_rand() % 64 - 32
                   : interesting[s_rand() % (sizeof interesting / sizeof *interesting)];
        size_t at = s_pos(n);
        if (at + (size_t) w <= n)
            memcpy(buf + at, &v, (size_t) w);
        break;
    }
    case 3:   /* truncate */
        *size = n ? (size_t) (s_rand() % n) : 0;
        break;
    case 4: { /* delete a chunk */
        size_t at = s_pos(n), len = 1 + s_rand() % 64;
        if (at + len <= n) {
            memmove(buf + at, buf + at + len, n - at - len);
            *size = n - len;
        }
        break;
    }
    case 5: { /* insert a chunk copied from elsewhere in the input */
        uint8_t chunk[64];
        size_t at = s_pos(n), len = 1 + s_rand() % 64, from = n ? s_rand() % n : 0;
        if (n + len <= cap && from + len <= n) {
            memcpy(chunk, buf + from, len);
            memmove(buf + at + len, buf + at, n - at);
            memcpy(buf + at, chunk, len);
            *size = n + len;
        }
        break;
    }
    default: { /* splice: from a point on, the bytes of another input */
        const s_input_t *o = &s_corpus[s_rand() % (uint64_t) s_n_corpus];
        size_t at = s_pos(n), from = o->size ? s_rand() % o->size : 0;
        size_t len = o->size - from < cap - at ? o->size - from : cap - at;
        memcpy(buf + at, o->data + from, len);
        *size = at + len;
        break;
    }
    }
}

static long s_runs = 1000;

static void test_corpus(void)
{
    SQ_REQUIRE(s_n_corpus > 0);
    for (int i = 0; i < s_n_corpus; i++)
        LLVMFuzzerTestOneInput(s_corpus[i].data, s_corpus[i].size);
}

static void test_mutants(void)
{
    size_t cap = S_MAX_SIZE + 4096;
    uint8_t *buf = malloc(cap);
    SQ_REQUIRE(buf && s_n_corpus > 0);
    for (long r = 0; r < s_runs; r++) {
        const s_input_t *in = &s_corpus[s_rand() % (uint64_t) s_n_corpus];
        size_t size = in->size;
        memcpy(buf, in->data, size);
        int n_mut = 1 + (int) (s_rand() % 4);
        for (int m = 0; m < n_mut; m++)
            s_mutate_once(buf, &size, cap);
        LLVMFuzzerTestOneInput(buf, size);
        sq_test_n_checks++;   /* one check per mutant: it ran without a crash */
    }
    free(buf);
    fprintf(stderr, "fuzz_replay: %d corpus inputs, %ld mutants\n", s_n_corpus, s_runs);
}

int main(int argc, char **argv)
{
    s_rng = 0x9E3779B97F4A7C15u;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-runs=", 6) == 0)
            s_runs = atol(argv[i] + 6);
        else if (strncmp(argv[i], "-seed=", 6) == 0)
            s_rng ^= strtoull(argv[i] + 6, NULL, 10) * 0x2545F4914F6CDD1Du;
        else
            s_load(argv[i]);
    }
    SQ_RUN(test_corpus);
    SQ_RUN(test_mutants);
    for (int i = 0; i < s_n_corpus; i++)
        free(s_corpus[i].data);
    const char *name = strrchr(argv[0], '/');
    return sq_test_summary(name ? name + 1 : argv[0]);
}
