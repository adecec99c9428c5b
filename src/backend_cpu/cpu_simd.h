/* Internal to the CPU backend: the float vector type the convolution's register blocks are built from, chosen
 * at compile time from the target ISA (-march).  FMA is explicit: the Makefile compiles in ISO C mode, where gcc
 * does not contract a*b+c on its own.  cpu_vleaky(v, alpha) is v > 0 ? v : alpha*v per lane (§2.2); cpu_vhsum is
 * the sum of the lanes in a fixed order. */
#ifndef VXM_BACKEND_CPU_SIMD_H
#define VXM_BACKEND_CPU_SIMD_H

#if defined(__AVX512F__)
#include <immintrin.h>
#define CPU_VW 16   /* floats per vector */
#define CPU_NVREG 32 /* architectural vector registers */
typedef __m512 cpu_vf;
static inline cpu_vf cpu_vload(const float *p) { return _mm512_loadu_ps(p); }
static inline void cpu_vstore(float *p, cpu_vf v) { _mm512_storeu_ps(p, v); }
static inline cpu_vf cpu_vset1(float x) { return _mm512_set1_ps(x); }
/* v > o ? v : o per lane (MAXPS returns its second operand unless the first is greater: NaN and -0 as §2.3) */
static inline cpu_vf cpu_vmax(cpu_vf v, cpu_vf o) { return _mm512_max_ps(v, o); }
static inline cpu_vf cpu_vfma(cpu_vf a, cpu_vf b, cpu_vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline float cpu_vhsum(cpu_vf v) { return _mm512_reduce_add_ps(v); }
static inline cpu_vf cpu_vleaky(cpu_vf v, float alpha)
{
    __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(pos, _mm512_mul_ps(_mm512_set1_ps(alpha), v), v);
}
#elif defined(__AVX__)
#include <immintrin.h>
#define CPU_VW 8
#define CPU_NVREG 16
typedef __m256 cpu_vf;
static inline cpu_vf cpu_vload(const float *p) { return _mm256_loadu_ps(p); }
static inline void cpu_vstore(float *p, cpu_vf v) { _mm256_storeu_ps(p, v); }
static inline cpu_vf cpu_vset1(float x) { return _mm256_set1_ps(x); }
static inline cpu_vf cpu_vmax(cpu_vf v, cpu_vf o) { return _mm256_max_ps(v, o); }
static inline float cpu_vhsum(cpu_vf v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
static inline cpu_vf cpu_vleaky(cpu_vf v, float alpha)
{
    __m256 pos = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ);
    return _mm256_blendv_ps(_mm256_mul_ps(_mm256_set1_ps(alpha), v), v, pos);
}
#if defined(__FMA__)
static inline cpu_vf cpu_vfma(cpu_vf a, cpu_vf b, cpu_vf c) { return _mm256_fmadd_ps(a, b, c); }
#else
static inline cpu_vf cpu_vfma(cpu_vf a, cpu_vf b, cpu_vf c) { return _mm256_add_ps(_mm256_mul_ps(a, b), c); }
#endif
#elif defined(__SSE2__)
#include <immintrin.h>
#define CPU_VW 4
#define CPU_NVREG 16
typedef __m128 cpu_vf;
static inline cpu_vf cpu_vload(const float *p) { return _mm_loadu_ps(p); }
static inline void cpu_vstore(float *p, cpu_vf v) { _mm_storeu_ps(p, v); }
static inline cpu_vf cpu_vset1(float x) { return _mm_set1_ps(x); }
static inline cpu_vf cpu_vmax(cpu_vf v, cpu_vf o) { return _mm_max_ps(v, o); }
static inline cpu_vf cpu_vfma(cpu_vf a, cpu_vf b, cpu_vf c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
static inline float cpu_vhsum(cpu_vf v)
{
    __m128 s = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
static inline cpu_vf cpu_vleaky(cpu_vf v, float alpha)
{
    __m128 pos = _mm_cmpgt_ps(v, _mm_setzero_ps());
    return _mm_or_ps(_mm_and_ps(pos, v), _mm_andnot_ps(pos, _mm_mul_ps(_mm_set1_ps(alpha), v)));
}
#else
#include <string.h>
#define CPU_VW 4
#define CPU_NVREG 16
typedef float cpu_vf __attribute__((vector_size(16)));
static inline cpu_vf cpu_vload(const float *p) { cpu_vf v; memcpy(&v, p, sizeof v); return v; }
static inline void cpu_vstore(float *p, cpu_vf v) { memcpy(p, &v, sizeof v); }
static inline cpu_vf cpu_vset1(float x) { cpu_vf v = {x, x, x, x}; return v; }
static inline cpu_vf cpu_vmax(cpu_vf v, cpu_vf o)
{
    typedef int cpu_vi __attribute__((vector_size(16)));
    cpu_vi gt = v > o;
    return (cpu_vf)(((cpu_vi)v & gt) | ((cpu_vi)o & ~gt));
}
static inline cpu_vf cpu_vfma(cpu_vf a, cpu_vf b, cpu_vf c) { return a * b + c; }
static inline float cpu_vhsum(cpu_vf v) { return (v[0] + v[2]) + (v[1] + v[3]); }
static inline cpu_vf cpu_vleaky(cpu_vf v, float alpha)
{
    float t[4];
    memcpy(t, &v, sizeof t);
    for (int i = 0; i < 4; i++)
        t[i] = t[i] > 0.0f ? t[i] : alpha * t[i];
    memcpy(&v, t, sizeof t);
    return v;
}
#endif

#endif
