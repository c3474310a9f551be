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

#endif
