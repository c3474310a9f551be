/*  sq_gguf_writer: writes a GGUF v3 file (layout in sq_gguf.h), streaming.
 *
 *  Use: add metadata (every value type, arrays included) and tensor infos,
 *  then sq_gguf_writer_open() writes the header, metadata, tensor infos and
 *  padding; tensor data follows with sq_gguf_writer_write() in the order
 *  the tensors were added, in pieces of any size, so a 4 GB model never has
 *  to sit in memory. sq_gguf_writer_close() checks every tensor got exactly
 *  its bytes and closes the file.
 *
 *  Metadata is serialized as it is added (the writer keeps the encoded
 *  bytes, not copies of the caller's arrays). Keys must be unique.
 *  Alignment: `general.alignment` is written as the first key unless the
 *  writer was made with alignment 0, which means the default (32) and no
 *  key. sq_gguf_writer_pos() tells where each section landed in the file,
 *  so tests can cut or corrupt a written file at exact places.
 */
#ifndef SQ_GGUF_WRITER_H
#define SQ_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq_gguf_writer sq_gguf_writer_t;

/* alignment: a power of two (written as general.alignment), or 0 for the
 * default 32 without the key. NULL on a bad alignment or no memory. */
sq_gguf_writer_t *sq_gguf_writer_new(uint32_t alignment);
/* Closes the file if still open (an unfinished file is left as it is). */
void sq_gguf_writer_destroy(sq_gguf_writer_t **self_p);

/* --- metadata (only before open) --- */
int sq_gguf_writer_add_u8(sq_gguf_writer_t *self, const char *key, uint8_t v);
int sq_gguf_writer_add_i8(sq_gguf_writer_t *self, const char *key, int8_t v);
int sq_gguf_writer_add_u16(sq_gguf_writer_t *self, const char *key, uint16_t v);
int sq_gguf_writer_add_i16(sq_gguf_writer_t *self, const char *key, int16_t v);
int sq_gguf_writer_add_u32(sq_gguf_writer_t *self, const char *key, uint32_t v);
int sq_gguf_writer_add_i32(sq_gguf_writer_t *self, const char *key, int32_t v);
int sq_gguf_writer_add_f32(sq_gguf_writer_t *self, const char *key, float v);
int sq_gguf_writer_add_bool(sq_gguf_writer_t *self, const char *key, bool v);
int sq_gguf_writer_add_u64(sq_gguf_writer_t *self, const char *key, uint64_t v);
int sq_gguf_writer_add_i64(sq_gguf_writer_t *self, const char *key, int64_t v);
int sq_gguf_writer_add_f64(sq_gguf_writer_t *self, const char *key, double v);
/* A string of len bytes (need not be NUL-terminated). */
int sq_gguf_writer_add_str(sq_gguf_writer_t *self, const char *key, const char *s, size_t len);
/* An array of n scalars of elem_type (SQ_GGUF_UINT8 .. FLOAT64, not STRING
 * or ARRAY), data in host order (little-endian on every target we build). */
int sq_gguf_writer_add_array(sq_gguf_writer_t *self, const char *key, uint32_t elem_type,
                             const void *data, uint64_t n);
/* An array of n strings; lens may be NULL for NUL-terminated strings. */
int sq_gguf_writer_add_str_array(sq_gguf_writer_t *self, const char *key,
                                 const char *const *strs, const uint32_t *lens, uint64_t n);

/* A value of any type given as its encoded bytes (GGUF layout, little-
 * endian), written verbatim: for nested arrays, and for tests that need
 * values the typed calls refuse to make. */
int sq_gguf_writer_add_raw(sq_gguf_writer_t *self, const char *key, uint32_t type,
                           const void *payload, size_t n);

/* --- tensors (only before open) ---
 * dtype: SQ_DTYPE_F32, F16 or Q8_0 (ne[0] a multiple of 32 for Q8_0);
 * ne fastest first, 1..SQ_GGUF_MAX_DIMS dims. */
int sq_gguf_writer_add_tensor(sq_gguf_writer_t *self, const char *name, int dtype,
                              int n_dims, const int64_t *ne);
/* Bytes of tensor i's data (known once added), 0 for no such tensor. */
uint64_t sq_gguf_writer_tensor_bytes(const sq_gguf_writer_t *self, int64_t i);
/* Tensor i as rows: OUT its dtype, row length ne[0] and row count (the
 * product of the other dims). SQ_EINVAL for no such tensor. */
int sq_gguf_writer_tensor_shape(const sq_gguf_writer_t *self, int64_t i, int *dtype,
                                int64_t *n_in, int64_t *n_rows);

/* --- file --- */
/* Create path and write everything up to the first tensor's data. */
int sq_gguf_writer_open(sq_gguf_writer_t *self, const char *path);
/* Append n bytes of tensor data; the writer moves to the next tensor (and
 * pads) when the current one is full. SQ_EINVAL when n runs past the last
 * tensor. */
int sq_gguf_writer_write(sq_gguf_writer_t *self, const void *data, size_t n);
/* Check that all tensor data was written, flush, close. */
int sq_gguf_writer_close(sq_gguf_writer_t *self);

/* Where a part of the file starts (valid once open has returned). */
typedef enum {
    SQ_GGUF_POS_N_TENSORS,     /* the u64 tensor count in the header */
    SQ_GGUF_POS_N_KV,          /* the u64 key/value count in the header */
    SQ_GGUF_POS_KV,            /* key/value index (its key's length) */
    SQ_GGUF_POS_TENSOR_INFO,   /* tensor info index (its name's length) */
    SQ_GGUF_POS_TENSOR_OFFSET, /* the u64 data offset in tensor info index */
    SQ_GGUF_POS_DATA,          /* the data section */
    SQ_GGUF_POS_TENSOR_DATA,   /* tensor index's data */
    SQ_GGUF_POS_END            /* file size */
} sq_gguf_pos_t;
/* File offset of what[index] (index ignored where there is one), or -1. */
int64_t sq_gguf_writer_pos(const sq_gguf_writer_t *self, sq_gguf_pos_t what, int64_t index);
int64_t sq_gguf_writer_n_kv(const sq_gguf_writer_t *self);
int64_t sq_gguf_writer_n_tensors(const sq_gguf_writer_t *self);

#ifdef __cplusplus
}
#endif
#endif
