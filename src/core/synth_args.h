/* Internal: the host-argument rules of the synthesis ops (backend.h, "synthesis" section; training doc §6.3), shared
 * by the CPU backend (backend_cpu/cpu_synth.c) and the OpenCL backend (backend_opencl/cl_synth.c) so that both refuse
 * the same calls with the same messages and read label maps the same way (cl/synth.cl repeats vxm_synth_label). */
#ifndef VXM_CORE_SYNTH_ARGS_H
#define VXM_CORE_SYNTH_ARGS_H

#include <math.h>

#include "backend.h"

/* rand_fill: distribution 0 (uniform) or 1 (normal). */
static inline vxm_status vxm_synth_check_dist(vxm_backend *be, int dist)
{
    if (dist != 0 && dist != 1)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "rand_fill: distribution %d (0 uniform, 1 normal)", dist);
    return VXM_OK;
}

/* A host table of n >= 1 rows and its arrays (the unused ones passed as any non-NULL pointer). */
static inline vxm_status vxm_synth_check_tables(vxm_backend *be, const char *op, int n, const void *t0,
                                                const void *t1, const void *t2)
{
    if (n < 1 || !t0 || !t1 || !t2)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: %d table entries or a missing table", op, n);
    return VXM_OK;
}

/* conv_axis: axis 0..2, an odd number of taps, y not aliasing x. */
static inline vxm_status vxm_synth_check_conv_axis(vxm_backend *be, const vxm_tensor *x, int axis, const float *taps,
                                                   int ntaps, const vxm_tensor *y)
{
    if (axis < 0 || axis > 2 || ntaps < 1 || !(ntaps & 1) || !taps)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "conv_axis: axis %d with %d taps (need axis 0..2, odd taps)",
                         axis, ntaps);
    if (x->buf == y->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "conv_axis: output must not alias the input");
    return VXM_OK;
}

/* The index of a label-map value (labels_to_intensity, one_hot): (int)v, or -1 outside 0..n-1 (those voxels get
 * all-zero outputs, never a read outside the host tables). */
static inline int vxm_synth_label(float v, int n)
{
    return (v >= 0.0f && v < (float)n) ? (int)v : -1;
}

/* minmax: out = (min of lo[k s], max of hi[k s]) over k < n with fminf / fmaxf (NaN ignored; nothing but NaN gives
 * (+inf, -inf)), as the OpenCL fmin / fmax of cl/synth.cl.  The CPU folds the data (lo = hi = data, s = 1), the OpenCL
 * backend its per-work-group partials (interleaved pairs: lo = part, hi = part + 1, s = 2).  Exact whatever the
 * order, so deterministic. */
static inline void vxm_synth_minmax_fold(const float *lo, const float *hi, size_t n, size_t s, float out[2])
{
    float mn = INFINITY, mx = -INFINITY;
    for (size_t k = 0; k < n; k++) {
        mn = fminf(mn, lo[k * s]);
        mx = fmaxf(mx, hi[k * s]);
    }
    out[0] = mn;
    out[1] = mx;
}

#endif
