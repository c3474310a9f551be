/*  test_model_util: small helpers shared by the engine's tests
 *  (test_gguf, test_model*, tests/mpi/test_tp). Header-only, static.
 */
#ifndef TEST_MODEL_UTIL_H
#define TEST_MODEL_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "sq_model.h"

/* A batch entry on the base model (fields by name, so entries added to
 * the struct later start at zero). */
static inline sq_batch_entry_t tm_entry(int32_t slot, int32_t token, int32_t pos, bool want_logits)
{
    return (sq_batch_entry_t){.slot = slot, .token = token, .pos = pos, .want_logits = want_logits};
}

/* max |a - b| relative to max |b| (at least 1e-30) over n values: the
 * tolerance measure for logits compared across paths */
static inline float tm_max_rel_diff(const float *a, const float *b, int n)
{
    float d = 0.0f, m = 1e-30f;
    for (int i = 0; i < n; i++) {
        d = fmaxf(d, fabsf(a[i] - b[i]));
        m = fmaxf(m, fabsf(b[i]));
    }
    return d / m;
}

/* The whole file, malloc'd (one spare byte), or NULL. OUT *n bytes. */
static inline char *tm_slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *p = NULL;
    long size;
    if (fseek(fp, 0, SEEK_END) == 0 && (size = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0 &&
        (p = malloc((size_t)size + 1)) != NULL && fread(p, 1, (size_t)size, fp) != (size_t)size) {
        free(p);
        p = NULL;
    }
    if (p)
        *n = (size_t)size;
    fclose(fp);
    return p;
}

#endif
