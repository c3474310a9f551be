/*  sq_sha256: SHA-256 as lowercase hex, of a buffer or a file (streamed),
 *  for the checksums shardq records: model files, adapter files. */
#ifndef SQ_SHA256_H
#define SQ_SHA256_H

#include <stddef.h>

/* out: 64 hex digits + NUL. 0 or SQ_EIO. */
int sq_sha256_hex(const void *data, size_t n, char out[65]);
/* The file's digest, read in 64 KiB pieces. 0, -errno or SQ_EIO; the
 * detail names the file. */
int sq_sha256_file_hex(const char *path, char out[65]);

/* A digest fed piece by piece: new (NULL when out of memory), update any
 * number of times, then finish, which frees it (0 or SQ_EIO, also when a
 * step failed). */
typedef struct sq_sha256_t sq_sha256_t;
sq_sha256_t *sq_sha256_new(void);
void sq_sha256_update(sq_sha256_t *self, const void *data, size_t n);
int sq_sha256_finish_hex(sq_sha256_t **self_p, char out[65]);

#endif
