/*  sq_hash: FNV-1a, the project's one non-cryptographic hash (hash tables
 *  of names and custom ids, the CUDA graph cache's keys, policy digests,
 *  host and device identities). Not for anything an attacker chooses the
 *  collisions of.
 */
#ifndef SQ_HASH_H
#define SQ_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SQ_FNV1A_INIT 1469598103934665603ULL

/* h extended by n bytes of data (start from SQ_FNV1A_INIT) */
static inline uint64_t sq_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* the hash of a NUL-terminated string */
static inline uint64_t sq_fnv1a_str(const char *s)
{
    uint64_t h = SQ_FNV1A_INIT;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

#endif
