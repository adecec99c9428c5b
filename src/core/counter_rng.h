/* Internal: counter-based random numbers for on-device synthesis (SynthMorph, training doc §6.3).  Element i of a
 * stream is a pure function of (key, i), so a backend may compute elements in any order, on any number of threads
 * or work-items, and still produce the stream of every other backend.  cl/synth.cl repeats these functions bit for
 * bit (integer part exactly; the float transcendental of the normal within a few ulps).
 *
 * The mixing function is the splitmix64 finaliser (Steele, Lea, Flood 2014), the same as core/rng.h. */
#ifndef VXM_CORE_COUNTER_RNG_H
#define VXM_CORE_COUNTER_RNG_H

#include <math.h>

static inline unsigned long long vxm_counter_mix(unsigned long long z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The key of stream `stream` under `seed` (computed once per op on the host and passed to kernels). */
static inline unsigned long long vxm_counter_key(unsigned long long seed, unsigned long long stream)
{
    return vxm_counter_mix(seed ^ vxm_counter_mix(stream + 0x632BE59BD9B4E019ULL));
}

/* 64 random bits of element i. */
static inline unsigned long long vxm_counter_bits(unsigned long long key, unsigned long long i)
{
    return vxm_counter_mix(key + (i + 1) * 0x9E3779B97F4A7C15ULL);
}

/* Uniform in [0, 1) with 24 bits: exactly representable, so every backend gets the same float. */
static inline float vxm_counter_uniform(unsigned long long key, unsigned long long i)
{
    return (float)(vxm_counter_bits(key, i) >> 40) * (1.0f / 16777216.0f);
}

/* N(0, 1) by Box-Muller from one 64-bit draw: u1 in (0, 1] (log never sees 0), u2 in [0, 1). */
static inline float vxm_counter_normal(unsigned long long key, unsigned long long i)
{
    unsigned long long b = vxm_counter_bits(key, i);
    float u1 = (float)((b >> 40) + 1) * (1.0f / 16777216.0f);
    float u2 = (float)((b >> 16) & 0xFFFFFFULL) * (1.0f / 16777216.0f);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
}

#endif
