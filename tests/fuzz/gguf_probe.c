/*  gguf_probe: see gguf_probe.h. */
#include "gguf_probe.h"

#include <string.h>

static uint64_t s_probe_kv(const sq_gguf_t *g, int64_t i)
{
    uint64_t sum = strlen(sq_gguf_kv_key(g, i));
    sq_gguf_str_t s;
    int64_t v;
    double f;
    size_t size;
    uint32_t et;
    uint64_t n;
    if (sq_gguf_kv_str(g, i, &s) == 0 && s.len)
        sum += (uint8_t) s.data[0] + (uint8_t) s.data[s.len - 1];
    if (sq_gguf_kv_int(g, i, &v) == 0)
        sum += (uint64_t) v;
    if (sq_gguf_kv_float(g, i, &f) == 0)
        sum += f == f;
    const uint8_t *raw = sq_gguf_kv_raw(g, i, &size);
    if (raw && size)
        sum += raw[0] + raw[size - 1];
    if (sq_gguf_kv_arr(g, i, &et, &n) == 0 && n > 0) {
        if (sq_gguf_kv_arr_str(g, i, n - 1, &s) == 0 && s.len)
            sum += (uint8_t) s.data[s.len - 1];
        if (sq_gguf_kv_arr_int(g, i, n - 1, &v) == 0)
            sum += (uint64_t) v;
        if (sq_gguf_kv_arr_float(g, i, 0, &f) == 0)
            sum += f == f;
    }
    return sum;
}

uint64_t gguf_probe(const sq_gguf_t *g)
{
    uint64_t sum = 0;
    for (int64_t i = 0; i < sq_gguf_n_kv(g); i++)
        sum += s_probe_kv(g, i);
    for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor_t *t = sq_gguf_tensor(g, i);
        const uint8_t *d = t->data;
        char shape[SQ_GGUF_SHAPE_BYTES];
        if (t->size_bytes)
            sum += d[0] + d[t->size_bytes - 1];
        sum += sq_gguf_find_tensor(g, t->name) == t;
        sum += strlen(sq_gguf_shape(t, shape, sizeof shape));
    }
    return sum;
}
