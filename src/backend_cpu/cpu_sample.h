/* Internal to the CPU backend: the clamped linear sampling rule of spec §4.2 and the dense sampler (§4.1-§4.4)
 * shared by the spatial transformer, scaling and squaring (§5) and the linear resize (§6). */
#ifndef VXM_BACKEND_CPU_SAMPLE_H
#define VXM_BACKEND_CPU_SAMPLE_H

#include <math.h>
#include <stddef.h>

#include "backend.h"

/* One axis of a linear sample: corners lo/hi and their weights, exactly as §4.2, all in float32:
 *   q = clamp(p, 0, n-1), f = clamp(floor(p), 0, n-1), c = clamp(f + 1, 0, n-1), wlo = c - q, whi = 1 - wlo.
 * The clamp sends a NaN coordinate to 0 instead of into an undefined float->int conversion. */
typedef struct cpu_lin_axis {
    int lo, hi;
    float wlo, whi;
} cpu_lin_axis;

static inline float cpu_clampf(float v, float hi)
{
    /* NaN -> 0.  Two plain selects: they inline and vectorize, unlike fminf/fmaxf (calls in ISO C mode) or a
     * nested conditional (which gcc does not if-convert). */
    float lo = v > 0.0f ? v : 0.0f;
    return lo < hi ? lo : hi;
}

static inline cpu_lin_axis cpu_lin_axis_at(float p, int n)
{
    float top = (float)(n - 1);
    float q = cpu_clampf(p, top);
    float f = cpu_clampf(floorf(p), top);
    float c = cpu_clampf(f + 1.0f, top);
    cpu_lin_axis a;
    a.lo = (int)f;
    a.hi = (int)c;
    a.wlo = c - q;
    a.whi = 1.0f - a.wlo;
    return a;
}

/* Trilinear sample of all C channels of img (shape s, channels-last) at the corners/weights a[0..2]:
 * sum over the 8 corners in lexicographic order of weight ((w0*w1)*w2) times value, as TF does (§4.2). */
static inline void cpu_interp_linear(const float *img, const int s[3], int C, const cpu_lin_axis a[3], float *out)
{
    size_t c = (size_t)C, row = (size_t)s[2] * c, plane = (size_t)s[1] * row;
    const float *p000 = img + (size_t)a[0].lo * plane + (size_t)a[1].lo * row + (size_t)a[2].lo * c;
    size_t d0 = (size_t)(a[0].hi - a[0].lo) * plane, d1 = (size_t)(a[1].hi - a[1].lo) * row;
    size_t d2 = (size_t)(a[2].hi - a[2].lo) * c;
    const float *p010 = p000 + d1, *p100 = p000 + d0, *p110 = p100 + d1;
    float w00 = a[0].wlo * a[1].wlo, w01 = a[0].wlo * a[1].whi, w10 = a[0].whi * a[1].wlo, w11 = a[0].whi * a[1].whi;
    float w000 = w00 * a[2].wlo, w001 = w00 * a[2].whi, w010 = w01 * a[2].wlo, w011 = w01 * a[2].whi;
    float w100 = w10 * a[2].wlo, w101 = w10 * a[2].whi, w110 = w11 * a[2].wlo, w111 = w11 * a[2].whi;
    for (size_t k = 0; k < c; k++) {
        float acc = w000 * p000[k];
        acc += w001 * p000[k + d2];
        acc += w010 * p010[k];
        acc += w011 * p010[k + d2];
        acc += w100 * p100[k];
        acc += w101 * p100[k + d2];
        acc += w110 * p110[k];
        acc += w111 * p110[k + d2];
        out[k] = acc;
    }
}

/* Nonzero when an image of this shape can be sampled (voxel indices fit in int). */
int cpu_sample_fits(const int ishape[3]);

/* Dense pull-back sampling on the grid `gshape` (the displacement's shape, §4.1): for every voxel x,
 * p = x + disp(x) (one float32 addition per displaced axis; disp has ndim channels for the last ndim axes),
 * out(x) = Interp(img, p), all C channels.  use_fill: §4.3.  add_base: out(x) += disp(x) channel-wise
 * (scaling and squaring, §5; requires C == ndim).  out must not alias img or disp. */
void cpu_sample_dense(const float *img, const int ishape[3], int C, const float *disp, const int gshape[3], int ndim,
                      vxm_interp interp, int use_fill, float fill, int add_base, float *out, int nthreads);

#endif
