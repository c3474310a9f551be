/*  sq_prof: the rows and their table (see sq_prof.h). Rows are few (a
 *  model's distinct steps times a handful of batch buckets), so they are a
 *  plain array searched by label.
 */
#define _POSIX_C_SOURCE 200809L   /* open_memstream */
#include "sq_prof.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_error.h"

enum { S_LABEL = 64 };

typedef struct {
    char label[S_LABEL];
    long calls;
    double ms, bytes;
} s_row_t;

struct sq_prof {
    s_row_t *rows;
    int n_rows, cap;
};

sq_prof_t *sq_prof_new(void)
{
    sq_prof_t *self = calloc(1, sizeof *self);
    if (!self)
        SQ_FAIL(SQ_ENOMEM, "profile");
    return self;
}

void sq_prof_destroy(sq_prof_t **self_p)
{
    if (!*self_p)
        return;
    free((*self_p)->rows);
    free(*self_p);
    *self_p = NULL;
}

bool sq_prof_wanted(void)
{
    const char *v = getenv("SHARDQ_PROFILE");
    return v && *v && strcmp(v, "0") != 0;
}

const char *sq_prof_bucket(int n_tok)
{
    return n_tok <= 1 ? "1" : n_tok <= 16 ? "2-16" : n_tok <= 64 ? "17-64"
         : n_tok <= 256 ? "65-256" : "257+";
}

const char *sq_prof_dtype(int dtype)
{
    return dtype == 0 ? "f32" : dtype == 1 ? "f16" : dtype == 8 ? "q8_0" : "?";
}

int sq_prof_add(sq_prof_t *self, const char *label, double ms, double bytes)
{
    s_row_t *r = NULL;
    for (int i = 0; i < self->n_rows && !r; i++)
        if (strncmp(self->rows[i].label, label, S_LABEL - 1) == 0)
            r = &self->rows[i];
    if (!r) {
        if (self->n_rows == self->cap) {
            const int cap = self->cap ? 2 * self->cap : 32;
            s_row_t *rows = realloc(self->rows, (size_t)cap * sizeof *rows);
            if (!rows)
                return SQ_FAIL(SQ_ENOMEM, "profile of %d rows", cap);
            self->rows = rows;
            self->cap = cap;
        }
        r = &self->rows[self->n_rows++];
        *r = (s_row_t){0};
        snprintf(r->label, sizeof r->label, "%s", label);
    }
    r->calls++;
    r->ms += ms;
    r->bytes += bytes;
    return 0;
}

static int s_by_time(const void *a, const void *b)
{
    const double x = ((const s_row_t *)a)->ms, y = ((const s_row_t *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

char *sq_prof_text(const sq_prof_t *self, const char *header)
{
    if (self->n_rows == 0)
        return NULL;
    s_row_t *rows = malloc((size_t)self->n_rows * sizeof *rows);
    char *text = NULL;
    size_t len = 0;
    FILE *f = rows ? open_memstream(&text, &len) : NULL;
    if (!f) {
        free(rows);
        SQ_FAIL(SQ_ENOMEM, "profile text");
        return NULL;
    }
    memcpy(rows, self->rows, (size_t)self->n_rows * sizeof *rows);
    qsort(rows, (size_t)self->n_rows, sizeof *rows, s_by_time);
    double total = 0.0;
    long calls = 0;
    for (int i = 0; i < self->n_rows; i++) {
        total += rows[i].ms;
        calls += rows[i].calls;
    }
    fprintf(f, "%s\n", header);
    fprintf(f, "%-48s %8s %10s %6s %9s %8s\n", "step [batch]", "calls", "total ms", "share",
            "us/call", "GB/s");
    for (int i = 0; i < self->n_rows; i++) {
        const s_row_t *r = &rows[i];
        fprintf(f, "%-48s %8ld %10.3f %5.1f%% %9.2f", r->label, r->calls, r->ms,
                total > 0.0 ? 100.0 * r->ms / total : 0.0, 1e3 * r->ms / (double)r->calls);
        if (r->bytes > 0.0 && r->ms > 0.0)
            fprintf(f, " %8.1f", r->bytes / (r->ms * 1e-3) / 1e9);
        fputc('\n', f);
    }
    fprintf(f, "%-48s %8ld %10.3f\n", "all steps", calls, total);
    free(rows);
    if (fclose(f) != 0) {
        free(text);
        SQ_FAIL(SQ_ENOMEM, "profile text");
        return NULL;
    }
    return text;
}
