/* Internal: the one seeded generator of the library (splitmix64), for sampling noise and weight initialisers.
 * TF's Philox streams cannot be reproduced; only the distributions are. */
#ifndef VXM_CORE_RNG_H
#define VXM_CORE_RNG_H

#include <math.h>

/* The next 64 random bits (splitmix64, Steele, Lea, Flood 2014: the state advances by the golden-ratio
 * increment). */
static inline unsigned long long vxm_rng_next(unsigned long long *s)
{
    unsigned long long z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1): never 0, so log() is safe. */
static inline double vxm_rng_uniform(unsigned long long *s)
{
    return ((double)(vxm_rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

/* N(0, 1) by Box-Muller (one draw per call). */
static inline double vxm_rng_normal(unsigned long long *s)
{
    double u1 = vxm_rng_uniform(s), u2 = vxm_rng_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
