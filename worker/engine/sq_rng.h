/*  sq_rng: the sampler's generator, xoshiro256** seeded through
 *  splitmix64: the same seed gives the same numbers on every machine (no
 *  libc rand()). Header-only; the state is a plain value the owner keeps.
 */
#ifndef SQ_RNG_H
#define SQ_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} sq_rng_t;

static inline uint64_t sq_rng_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void sq_rng_seed(sq_rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = sq_rng_splitmix(&seed);
}

static inline uint64_t sq_rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t sq_rng_next(sq_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = sq_rng_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sq_rng_rotl(s[3], 45);
    return result;
}

/* uniform in [0, 1) with 53 random bits */
static inline double sq_rng_uniform(sq_rng_t *r)
{
    return (double)(sq_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
