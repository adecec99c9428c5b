/* Dense sampling at x + disp(x) (spec §4.1-§4.4): the one loop behind the spatial transformer and each
 * scaling-and-squaring step.
 *
 * Each row of the output grid is processed in chunks of CHUNK voxels in two phases: first the sampling
 * locations, corner indices and weights of the whole chunk (straight-line float/int code without calls, which
 * the compiler vectorizes), then the gathers and weighted sums per channel.  The arithmetic is exactly that of
 * cpu_lin_axis_at / cpu_interp_linear (cpu_sample.h), so the result does not depend on the code path. */
#include <limits.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_sample.h"

#define CHUNK 64 /* voxels per chunk */

typedef struct sample_geom {
    const float *img;
    int n[3];  /* image shape */
    int C;     /* image channels */
    const float *disp;
    int m[3];  /* grid shape */
    int ndim;
    vxm_interp interp;
    int use_fill, add_base;
    float fill;
    float *out;
} sample_geom;

/* Phase 1 works on SW voxels at a time with GCC/Clang vector extensions (any ISA; 8 lanes where AVX makes them
 * native, else 4): gcc does not reliably if-convert the clamps of §4.2 on its own.  Every lane computes exactly
 * the scalar float32 expression. */
#if defined(__AVX__)
#define SW 8
#else
#define SW 4
#endif
typedef float svf __attribute__((vector_size(SW * 4)));
typedef int svi __attribute__((vector_size(SW * 4)));
_Static_assert(CHUNK % SW == 0, "phase 1 works in whole vectors");

static inline svf sv_load(const float *p)
{
    svf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline svf sv_splat(float x)
{
    svf v;
    for (int i = 0; i < SW; i++)
        v[i] = x;
    return v;
}

/* m ? a : b per lane (m is 0 or -1, as vector comparisons give) */
static inline svf sv_sel(svi m, svf a, svf b)
{
    return (svf)((m & (svi)a) | (~m & (svi)b));
}

/* clamp(v, 0, hi) with NaN -> 0, lane-wise cpu_clampf */
static inline svf sv_clamp(svf v, svf hi)
{
    svf zero = sv_splat(0.0f);
    svf lo = sv_sel(v > zero, v, zero);
    return sv_sel(lo < hi, lo, hi);
}

/* One axis of §4.2 for a chunk: corners lo/hi and weights, per lane
 *   q = clamp(p), f = clamp(floor(p)), c = clamp(f + 1), wlo = c - q, whi = 1 - wlo.
 * floor(p) is taken by truncation of p limited to [-1, top + 1] (which leaves the clamped floor unchanged and
 * keeps the int conversion defined; NaN ends up at 0 like the scalar rule).  Works in steps of SW up to cnt
 * rounded up (the chunk arrays are CHUNK long); lanes past cnt are never used. */
static void axis_linear(const float *p, int cnt, int n, int *lo, int *hi, float *wlo, float *whi)
{
    const svf top = sv_splat((float)(n - 1)), above = sv_splat((float)n), one = sv_splat(1.0f);
    const svf minus1 = sv_splat(-1.0f), zero = sv_splat(0.0f);
    for (int i = 0; i < cnt; i += SW) {
        svf x = sv_load(p + i);
        svf q = sv_clamp(x, top);
        svf xl = sv_sel(x > minus1, x, minus1);
        svf xc = sv_sel(xl < above, xl, above);
        svf t = __builtin_convertvector(__builtin_convertvector(xc, svi), svf);
        svf fl = t - sv_sel(t > xc, one, zero);
        svf f = sv_clamp(fl, top);
        svf c = sv_clamp(f + one, top);
        svf wl = c - q;
        svf wh = one - wl;
        svi fi = __builtin_convertvector(f, svi), ci = __builtin_convertvector(c, svi);
        memcpy(lo + i, &fi, sizeof fi);
        memcpy(hi + i, &ci, sizeof ci);
        memcpy(wlo + i, &wl, sizeof wl);
        memcpy(whi + i, &wh, sizeof wh);
    }
}

/* Phase 1, linear: the 8 corner voxel indices and weights (§4.2), and the out-of-bounds flag (§4.3). */
static void corners_linear(const sample_geom *G, const float (*P)[CHUNK], int cnt, int (*idx)[CHUNK],
                           float (*w)[CHUNK], int *outside)
{
    int lo[3][CHUNK], hi[3][CHUNK];
    float wl[3][CHUNK], wh[3][CHUNK];
    for (int d = 0; d < 3; d++)
        axis_linear(P[d], cnt, G->n[d], lo[d], hi[d], wl[d], wh[d]);
    const int n1 = G->n[1], n2 = G->n[2];
    for (int i = 0; i < cnt; i++) {
        int a0 = lo[0][i] * n1, b0 = hi[0][i] * n1, a2 = lo[2][i], b2 = hi[2][i];
        int r00 = (a0 + lo[1][i]) * n2, r01 = (a0 + hi[1][i]) * n2, r10 = (b0 + lo[1][i]) * n2,
            r11 = (b0 + hi[1][i]) * n2;
        float w00 = wl[0][i] * wl[1][i], w01 = wl[0][i] * wh[1][i], w10 = wh[0][i] * wl[1][i],
              w11 = wh[0][i] * wh[1][i];
        idx[0][i] = r00 + a2;
        idx[1][i] = r00 + b2;
        idx[2][i] = r01 + a2;
        idx[3][i] = r01 + b2;
        idx[4][i] = r10 + a2;
        idx[5][i] = r10 + b2;
        idx[6][i] = r11 + a2;
        idx[7][i] = r11 + b2;
        w[0][i] = w00 * wl[2][i];
        w[1][i] = w00 * wh[2][i];
        w[2][i] = w01 * wl[2][i];
        w[3][i] = w01 * wh[2][i];
        w[4][i] = w10 * wl[2][i];
        w[5][i] = w10 * wh[2][i];
        w[6][i] = w11 * wl[2][i];
        w[7][i] = w11 * wh[2][i];
    }
    const float t0 = (float)(G->n[0] - 1), t1 = (float)(G->n[1] - 1), t2 = (float)(G->n[2] - 1);
    for (int i = 0; i < cnt; i++)
        outside[i] = (P[0][i] < 0.0f) | (P[0][i] > t0) | (P[1][i] < 0.0f) | (P[1][i] > t1) | (P[2][i] < 0.0f) |
                     (P[2][i] > t2);
}

/* Phase 1, nearest: round half to even (rintf), then clamp (§4.4). */
static void corners_nearest(const sample_geom *G, const float (*P)[CHUNK], int cnt, int *idx, int *outside)
{
    const float t0 = (float)(G->n[0] - 1), t1 = (float)(G->n[1] - 1), t2 = (float)(G->n[2] - 1);
    const int n1 = G->n[1], n2 = G->n[2];
    for (int i = 0; i < cnt; i++) {
        float p0 = P[0][i], p1 = P[1][i], p2 = P[2][i];
        int r0 = (int)cpu_clampf(rintf(p0), t0), r1 = (int)cpu_clampf(rintf(p1), t1);
        int r2 = (int)cpu_clampf(rintf(p2), t2);
        idx[i] = (r0 * n1 + r1) * n2 + r2;
        outside[i] = (p0 < 0.0f) | (p0 > t0) | (p1 < 0.0f) | (p1 > t1) | (p2 < 0.0f) | (p2 > t2);
    }
}

/* Phase 2, linear: o[i*C + c] = sum over the corners b = 0..7, in lexicographic order, of
 * w[b*CHUNK + i] * img[idx[b*CHUNK + i]*C + c] (the float32 operations of cpu_interp_linear). */
static void gather_linear(const float *restrict img, size_t C, int cnt, const int *restrict idx,
                          const float *restrict w, float *restrict o)
{
    if (C == 1) {
        for (int i = 0; i < cnt; i++) {
            float acc = w[i] * img[idx[i]];
            acc += w[CHUNK + i] * img[idx[CHUNK + i]];
            acc += w[2 * CHUNK + i] * img[idx[2 * CHUNK + i]];
            acc += w[3 * CHUNK + i] * img[idx[3 * CHUNK + i]];
            acc += w[4 * CHUNK + i] * img[idx[4 * CHUNK + i]];
            acc += w[5 * CHUNK + i] * img[idx[5 * CHUNK + i]];
            acc += w[6 * CHUNK + i] * img[idx[6 * CHUNK + i]];
            acc += w[7 * CHUNK + i] * img[idx[7 * CHUNK + i]];
            o[i] = acc;
        }
        return;
    }
#if defined(__AVX__)
    if (C == 3) { /* 3-D displacement fields: the 3 channels of a corner in one masked load (vmaskmovps never
                   * touches the masked lane, so the last voxel does not read past the buffer), instead of one gather
                   * per channel; the same float32 multiplies and adds per channel, in the same order. */
        const __m128i m3 = _mm_setr_epi32(-1, -1, -1, 0);
        for (int i = 0; i < cnt; i++) {
            __m128 acc = _mm_mul_ps(_mm_set1_ps(w[i]), _mm_maskload_ps(img + (size_t)idx[i] * 3, m3));
            for (int b = 1; b < 8; b++)
                acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(w[b * CHUNK + i]),
                                                 _mm_maskload_ps(img + (size_t)idx[b * CHUNK + i] * 3, m3)));
            _mm_maskstore_ps(o + (size_t)i * 3, m3, acc);
        }
        return;
    }
#endif
    if (C <= 4) { /* displacement fields: one channel at a time, vectorized over the voxels */
        float tmp[CHUNK];
        for (size_t c = 0; c < C; c++) {
            for (int i = 0; i < cnt; i++) {
                float acc = w[i] * img[(size_t)idx[i] * C + c];
                acc += w[CHUNK + i] * img[(size_t)idx[CHUNK + i] * C + c];
                acc += w[2 * CHUNK + i] * img[(size_t)idx[2 * CHUNK + i] * C + c];
                acc += w[3 * CHUNK + i] * img[(size_t)idx[3 * CHUNK + i] * C + c];
                acc += w[4 * CHUNK + i] * img[(size_t)idx[4 * CHUNK + i] * C + c];
                acc += w[5 * CHUNK + i] * img[(size_t)idx[5 * CHUNK + i] * C + c];
                acc += w[6 * CHUNK + i] * img[(size_t)idx[6 * CHUNK + i] * C + c];
                acc += w[7 * CHUNK + i] * img[(size_t)idx[7 * CHUNK + i] * C + c];
                tmp[i] = acc;
            }
            for (int i = 0; i < cnt; i++)
                o[(size_t)i * C + c] = tmp[i];
        }
        return;
    }
    for (int i = 0; i < cnt; i++) {
        const float *v[8];
        for (int b = 0; b < 8; b++)
            v[b] = img + (size_t)idx[b * CHUNK + i] * C;
        float *oi = o + (size_t)i * C;
        for (size_t c = 0; c < C; c++) {
            float acc = w[i] * v[0][c];
            for (int b = 1; b < 8; b++)
                acc += w[b * CHUNK + i] * v[b][c];
            oi[c] = acc;
        }
    }
}

static void sample_row(const sample_geom *G, int x0, int x1)
{
    const int first = 3 - G->ndim, ndim = G->ndim, C = G->C;
    const size_t row = (size_t)x0 * (size_t)G->m[1] + (size_t)x1;
    const float *u = G->disp + row * (size_t)G->m[2] * (size_t)ndim;
    float *out = G->out + row * (size_t)G->m[2] * (size_t)C;
    float P[3][CHUNK], w[8][CHUNK];
    int idx[8][CHUNK], outside[CHUNK];
    for (int s = 0; s < G->m[2]; s += CHUNK) {
        int cnt = G->m[2] - s < CHUNK ? G->m[2] - s : CHUNK;
        const float *us = u + (size_t)s * (size_t)ndim;
        float *os = out + (size_t)s * (size_t)C;
        /* sampling locations p = x + u(x), one float32 addition per displaced axis (§4.1) */
        for (int d = 0; d < 3; d++) {
            if (d < first) {
                float xd = (float)(d == 0 ? x0 : x1);
                for (int i = 0; i < cnt; i++)
                    P[d][i] = xd;
            } else if (d < 2) {
                float xd = (float)(d == 0 ? x0 : x1);
                for (int i = 0; i < cnt; i++)
                    P[d][i] = xd + us[(size_t)i * (size_t)ndim + (size_t)(d - first)];
            } else {
                for (int i = 0; i < cnt; i++)
                    P[d][i] = (float)(s + i) + us[(size_t)i * (size_t)ndim + (size_t)(d - first)];
            }
        }
        for (int d = 0; d < 3; d++) /* defined values in the vector lanes past cnt */
            for (int i = cnt; i < (cnt + SW - 1) / SW * SW; i++)
                P[d][i] = 0.0f;
        if (G->interp == VXM_INTERP_NEAREST) {
            corners_nearest(G, (const float(*)[CHUNK])P, cnt, idx[0], outside);
            for (int i = 0; i < cnt; i++)
                for (int c = 0; c < C; c++)
                    os[(size_t)i * (size_t)C + (size_t)c] = G->img[(size_t)idx[0][i] * (size_t)C + (size_t)c];
        } else {
            corners_linear(G, (const float(*)[CHUNK])P, cnt, idx, w, outside);
            gather_linear(G->img, (size_t)C, cnt, idx[0], w[0], os);
        }
        if (G->use_fill)
            for (int i = 0; i < cnt; i++)
                if (outside[i])
                    for (int c = 0; c < C; c++)
                        os[(size_t)i * (size_t)C + (size_t)c] = G->fill;
        if (G->add_base) /* scaling and squaring: w(x) + Interp(w, x + w(x)) */
            for (size_t k = 0; k < (size_t)cnt * (size_t)C; k++)
                os[k] = us[k] + os[k];
    }
}

int cpu_sample_fits(const int ishape[3])
{
    return (double)ishape[0] * (double)ishape[1] * (double)ishape[2] < (double)INT_MAX;
}

void cpu_sample_dense(const float *img, const int ishape[3], int C, const float *disp, const int gshape[3], int ndim,
                      vxm_interp interp, int use_fill, float fill, int add_base, float *out, int nthreads)
{
    sample_geom G = {img, {ishape[0], ishape[1], ishape[2]}, C, disp, {gshape[0], gshape[1], gshape[2]}, ndim, interp,
                     use_fill, add_base, fill, out};
    long rows = (long)gshape[0] * gshape[1];
    int par = (size_t)rows * (size_t)gshape[2] * (size_t)C >= CPU_PAR_MIN;
#pragma omp parallel for num_threads(nthreads) schedule(static) if (par)
    for (long r = 0; r < rows; r++)
        sample_row(&G, (int)(r / gshape[1]), (int)(r % gshape[1]));
}
