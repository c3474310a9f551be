/*  sq_gguf: a read-only, memory-mapped GGUF v3 file.
 *
 *  GGUF layout (little-endian):
 *    magic "GGUF", u32 version (3), u64 n_tensors, u64 n_kv,
 *    n_kv x { string key, u32 value_type, value },
 *    n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type,
 *                  u64 offset },
 *    padding to `general.alignment` (default 32), then the tensor data;
 *    each tensor's offset is relative to the data start and aligned.
 *  A string is u64 length + bytes (no NUL); an array is u32 element type,
 *  u64 count, then the elements (arrays of strings and of arrays allowed).
 *
 *  sq_gguf_open parses and validates everything up front: every length,
 *  count, offset and size is checked against the file before it is used,
 *  so a truncated, corrupted or hostile file gives SQ_EFORMAT / SQ_ETRUNC /
 *  SQ_EUNSUPPORTED with a detail naming the key or tensor, never a crash or
 *  an allocation larger than the file justifies. Afterwards the accessors
 *  cannot fail on the file's account.
 *
 *  Ownership: the sq_gguf_t owns the mapping; every pointer it returns
 *  (keys, names, string values, tensor data) is borrowed and lives until
 *  sq_gguf_destroy. Strings from the file are NOT NUL-terminated in the
 *  mapping; keys and tensor names are copied and are NUL-terminated.
 */
#ifndef SQ_GGUF_H
#define SQ_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Metadata value types (GGUF spec). */
typedef enum {
    SQ_GGUF_UINT8 = 0,
    SQ_GGUF_INT8 = 1,
    SQ_GGUF_UINT16 = 2,
    SQ_GGUF_INT16 = 3,
    SQ_GGUF_UINT32 = 4,
    SQ_GGUF_INT32 = 5,
    SQ_GGUF_FLOAT32 = 6,
    SQ_GGUF_BOOL = 7,
    SQ_GGUF_STRING = 8,
    SQ_GGUF_ARRAY = 9,
    SQ_GGUF_UINT64 = 10,
    SQ_GGUF_INT64 = 11,
    SQ_GGUF_FLOAT64 = 12,
    SQ_GGUF_N_TYPES
} sq_gguf_type_t;

#define SQ_GGUF_MAGIC "GGUF"
#define SQ_GGUF_VERSION 3
#define SQ_GGUF_DEFAULT_ALIGNMENT 32
#define SQ_GGUF_MAX_DIMS 4

/* Byte size of a scalar value type; 0 for STRING, ARRAY and unknown. */
size_t sq_gguf_type_size(uint32_t type);
/* "uint8", ..., "float64"; "?" for an unknown type. */
const char *sq_gguf_type_name(uint32_t type);

/* A string inside the mapping: len bytes at data, not NUL-terminated. */
typedef struct {
    const char *data;
    uint64_t len;
} sq_gguf_str_t;

typedef struct sq_gguf sq_gguf_t;

typedef struct {
    const char *name;           /* NUL-terminated copy */
    int dtype;                  /* SQ_DTYPE_F32 / F16 / Q8_0 (ggml type id; any
                                 * ggml type from sq_gguf_open_any) */
    int n_dims;                 /* 1..SQ_GGUF_MAX_DIMS */
    int64_t ne[SQ_GGUF_MAX_DIMS]; /* fastest first; unused dims are 1 */
    int64_t n_elements;
    uint64_t offset;            /* relative to the data section */
    size_t size_bytes;          /* 0 for a type of unknown size (sq_gguf_open_any) */
    const void *data;           /* in the mapping, aligned; NULL for a type of
                                 * unknown size */
} sq_gguf_tensor_t;

/* The ggml tensor type number type as ggml names it ("Q4_K"), with its
 * block (elements) and block bytes; false (NULL, 0, 0) for a number this
 * reader does not know. Any OUT may be NULL. */
bool sq_gguf_ggml_type(uint32_t type, const char **name, int64_t *block, size_t *bytes);

/* Map and validate path. NULL on error (SQ_FAIL detail names what). */
sq_gguf_t *sq_gguf_open(const char *path);
/* The same for inspecting any GGUF file (shardq-model info): tensors of
 * every ggml type are taken, not only the engine's F32, F16 and Q8_0;
 * those of a type sq_gguf_ggml_type knows are sized and checked against
 * the file like the others, those of an unknown type number have
 * size_bytes 0 and data NULL. Code that reads tensor data opens with
 * sq_gguf_open. */
sq_gguf_t *sq_gguf_open_any(const char *path);
void sq_gguf_destroy(sq_gguf_t **self_p);

uint32_t sq_gguf_version(const sq_gguf_t *self);
uint32_t sq_gguf_alignment(const sq_gguf_t *self);
/* Byte offset of the data section in the file, and the file size. */
uint64_t sq_gguf_data_offset(const sq_gguf_t *self);
uint64_t sq_gguf_file_size(const sq_gguf_t *self);

/* --- metadata, by index 0..n_kv-1 or by key --- */
int64_t sq_gguf_n_kv(const sq_gguf_t *self);
/* Index of key, or -1. */
int64_t sq_gguf_find_key(const sq_gguf_t *self, const char *key);
const char *sq_gguf_kv_key(const sq_gguf_t *self, int64_t i);
uint32_t sq_gguf_kv_type(const sq_gguf_t *self, int64_t i);
/* Scalar values of kv i converted: integers and bool to int64/uint64
 * (uint64 above INT64_MAX read as int64 fails), floats to double. Each
 * returns 0, or SQ_EINVAL when kv i is not of a compatible type. */
int sq_gguf_kv_int(const sq_gguf_t *self, int64_t i, int64_t *out);
int sq_gguf_kv_uint(const sq_gguf_t *self, int64_t i, uint64_t *out);
int sq_gguf_kv_float(const sq_gguf_t *self, int64_t i, double *out);
int sq_gguf_kv_str(const sq_gguf_t *self, int64_t i, sq_gguf_str_t *out);
/* Arrays: element type and count (SQ_EINVAL if kv i is not an array). */
int sq_gguf_kv_arr(const sq_gguf_t *self, int64_t i, uint32_t *elem_type, uint64_t *n);
/* The raw little-endian payload of a scalar-element array (n * type size
 * bytes, possibly unaligned: copy out with memcpy) or of a scalar value. */
const void *sq_gguf_kv_raw(const sq_gguf_t *self, int64_t i, size_t *size_bytes);
/* Element j of a string array. */
int sq_gguf_kv_arr_str(const sq_gguf_t *self, int64_t i, uint64_t j, sq_gguf_str_t *out);
/* Element j of a numeric array converted like the scalar getters. */
int sq_gguf_kv_arr_int(const sq_gguf_t *self, int64_t i, uint64_t j, int64_t *out);
int sq_gguf_kv_arr_float(const sq_gguf_t *self, int64_t i, uint64_t j, double *out);

/* By key, with the error naming the key: SQ_ENOTFOUND when absent,
 * SQ_EFORMAT when of the wrong type or out of the target's range. */
int sq_gguf_get_u32(const sq_gguf_t *self, const char *key, uint32_t *out);
int sq_gguf_get_f32(const sq_gguf_t *self, const char *key, float *out);
int sq_gguf_get_str(const sq_gguf_t *self, const char *key, sq_gguf_str_t *out);
/* Same, but a missing key leaves *out = dflt and returns 0. */
int sq_gguf_get_u32_or(const sq_gguf_t *self, const char *key, uint32_t dflt, uint32_t *out);
int sq_gguf_get_f32_or(const sq_gguf_t *self, const char *key, float dflt, float *out);
/* True when key holds exactly the string s. */
bool sq_gguf_str_eq(sq_gguf_str_t s, const char *cstr);

/* --- tensors --- */
int64_t sq_gguf_n_tensors(const sq_gguf_t *self);
const sq_gguf_tensor_t *sq_gguf_tensor(const sq_gguf_t *self, int64_t i);
/* NULL when absent (no error recorded: absence may be fine, e.g. a tied
 * output.weight). */
const sq_gguf_tensor_t *sq_gguf_find_tensor(const sq_gguf_t *self, const char *name);
/* t's shape with every dim, fastest first ("[64, 32, 2]"), into buf (cut
 * to size); returns buf. SQ_GGUF_SHAPE_BYTES holds any. */
#define SQ_GGUF_SHAPE_BYTES (2 + SQ_GGUF_MAX_DIMS * 22)
const char *sq_gguf_shape(const sq_gguf_tensor_t *t, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
