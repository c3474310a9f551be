/*  sq_file: a whole input file in memory, with the errors a user can act
 *  on: the file missing or unreadable (the system's reason), a directory
 *  where a file was meant, a file over the caller's cap, a read error.
 *  Every message starts with the path.
 */
#ifndef SQ_FILE_H
#define SQ_FILE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The file at `path` ("-": standard input), at most `cap` bytes, into a
 * malloc'd buffer with a NUL after its `*len_p` bytes (the file may hold
 * NULs of its own). 0; or -errno when it cannot be opened, SQ_EINVAL for
 * a directory, SQ_ETOOBIG over the cap, SQ_EIO on a read error. */
int sq_file_read(const char *path, size_t cap, char **data_p, size_t *len_p);

#ifdef __cplusplus
}
#endif
#endif
