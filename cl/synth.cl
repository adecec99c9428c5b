/* Synthesis ops (SynthMorph's label-map-to-image model, training doc §6.3) and the element-wise ops declared with
 * them in backend.h; the host side is src/backend_opencl/cl_synth.c, the CPU twin src/backend_cpu/cpu_synth.c.
 *
 * Counter-based random numbers: these functions repeat src/core/counter_rng.h bit for bit (the integer part and the
 * uniform exactly; the normal's sqrt / log / cos are the device's, within a few ulps of the C library).  The key
 * (vxm_counter_key) is computed on the host and passed as a ulong.
 *
 * Every kernel takes its arguments in the order buffers, floats, ints, ulongs (one launcher sets them all). */

static inline ulong vxm_counter_mix(ulong z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
    return z ^ (z >> 31);
}

static inline ulong vxm_counter_bits(ulong key, ulong i)
{
    return vxm_counter_mix(key + (i + 1) * 0x9E3779B97F4A7C15UL);
}

static inline float vxm_counter_uniform(ulong key, ulong i)
{
    return (float)(vxm_counter_bits(key, i) >> 40) * (1.0f / 16777216.0f);
}

static inline float vxm_counter_normal(ulong key, ulong i)
{
    ulong b = vxm_counter_bits(key, i);
    float u1 = (float)((b >> 40) + 1) * (1.0f / 16777216.0f);
    float u2 = (float)((b >> 16) & 0xFFFFFFUL) * (1.0f / 16777216.0f);
    return sqrt(-2.0f * log(u1)) * cos(6.2831853071795864f * u2);
}

/* Mesa rusticl (llvmpipe) passes the tables of its log() and pow() as a hidden kernel argument and warns
 * "Treating load_kernel_arg in control flow as uniform, results may be incorrect" when a call sits inside a branch
 * (an early return included); so the kernels below call log / pow before any bounds check (on a clamped index
 * where they read memory) and only guard the store.  The rest is plain per-element code.
 *
 * rand_fill, one kernel per distribution.
 * Uniform: p[i] = a + (b - a) u, clamped to top = nextafter(b, a) (from the host) to stay below b. */
__kernel void vxm_rand_uniform(__global float *p, float a, float b, float top, ulong key, ulong n)
{
    ulong i = get_global_id(0);
    if (i >= n)
        return;
    float r = a + (b - a) * vxm_counter_uniform(key, i);
    p[i] = r > top ? top : r;
}

/* Normal: p[i] = a + b N. */
__kernel void vxm_rand_normal(__global float *p, float a, float b, ulong key, ulong n)
{
    ulong i = get_global_id(0);
    float g = vxm_counter_normal(key, i); /* before the bounds check: see above */
    if (i < n)
        p[i] = a + b * g;
}

/* (int)v, or -1 outside 0..n-1: core/synth_args.h vxm_synth_label. */
static inline int vxm_synth_label(float v, int n)
{
    return (v >= 0.0f && v < (float)n) ? (int)v : -1;
}

/* §6.3 steps 5-6, one work-item per voxel: y[v, c] = mean[c nlab + l] + std[c nlab + l] N_v, 0 where l == 0 and
 * blank[c]; labels outside 0..nlab-1 give 0. */
__kernel void vxm_labels_to_intensity(__global const float *lab, __global float *y, __global const float *mean,
                                      __global const float *sd, __global const int *blank, int nlab, int nch,
                                      ulong key, ulong nvox)
{
    ulong v = get_global_id(0);
    float g = vxm_counter_normal(key, v); /* before the bounds check: see above */
    if (v >= nvox)
        return;
    int li = vxm_synth_label(lab[v], nlab);
    __global float *o = y + v * (ulong)nch;
    for (int c = 0; c < nch; c++) {
        int t = c * nlab + li;
        o[c] = (li < 0 || (li == 0 && blank[c] != 0)) ? 0.0f : mean[t] + sd[t] * g;
    }
}

/* §6.3 step 7, one work-item per element: taps in order, out-of-volume terms skipped (zero padding). */
__kernel void vxm_conv_axis(__global const float *x, __global float *y, __global const float *taps, int ntaps,
                            int n1, int n2, int nch, int axis, int len, ulong n)
{
    ulong e = get_global_id(0);
    if (e >= n)
        return;
    ulong v = e / (ulong)nch;
    int k = (int)(v % (ulong)n2), j = (int)(v / (ulong)n2 % (ulong)n1), i = (int)(v / (ulong)n2 / (ulong)n1);
    int pos = axis == 0 ? i : axis == 1 ? j : k;
    long stride = (axis == 0 ? (long)n1 * (long)n2 : axis == 1 ? (long)n2 : 1L) * (long)nch;
    int mid = ntaps / 2;
    float acc = 0.0f;
    for (int t = 0; t < ntaps; t++) {
        int q = pos + t - mid;
        if (q < 0 || q >= len)
            continue;
        acc += taps[t] * x[(long)e + (long)(q - pos) * stride];
    }
    y[e] = acc;
}

/* §6.3 step 8: y = x exp(f[voxel]). */
__kernel void vxm_mul_exp(__global const float *x, __global const float *f, __global float *y, int nch, ulong n)
{
    ulong e = get_global_id(0);
    if (e < n)
        y[e] = x[e] * exp(f[e / (ulong)nch]);
}

/* First pass of minmax: work-group g writes (min, max) of its elements (grid-stride over n, then a tree in local
 * memory) to part[2g], part[2g + 1]; the host takes the min / max of the partials.  fmin / fmax ignore NaN, and
 * min / max are exact, so the result does not depend on the partition.  Local size <= 256 (choose_lws caps it). */
__kernel void vxm_minmax_partial(__global const float *x, __global float *part, ulong n)
{
    __local float lmin[256], lmax[256];
    uint l = get_local_id(0), ls = get_local_size(0);
    float mn = INFINITY, mx = -INFINITY;
    for (ulong i = get_global_id(0); i < n; i += get_global_size(0)) {
        mn = fmin(mn, x[i]);
        mx = fmax(mx, x[i]);
    }
    lmin[l] = mn;
    lmax[l] = mx;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = 128; s > 0; s >>= 1) {
        if (l < s && l + s < ls) {
            lmin[l] = fmin(lmin[l], lmin[l + s]);
            lmax[l] = fmax(lmax[l], lmax[l + s]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0) {
        part[2 * get_group_id(0)] = lmin[0];
        part[2 * get_group_id(0) + 1] = lmax[0];
    }
}

/* §6.3 step 9: ((clamp(x, 0, 255) - lo) / (hi - lo)) ^ expo[c], 0 where hi == lo (div_no_nan). */
__kernel void vxm_normalize_gamma(__global const float *x, __global float *y, __global const float *expo, float lo,
                                  float hi, int nch, ulong n)
{
    ulong e = get_global_id(0), k = e < n ? e : n - 1; /* pow before the bounds check: see above */
    float den = hi - lo;
    float t = fmin(fmax(x[k], 0.0f), 255.0f);
    float r = pow((t - lo) / den, expo[k % (ulong)nch]);
    if (e < n)
        y[e] = den == 0.0f ? 0.0f : r;
}

/* Index of the first largest channel, as a float. */
__kernel void vxm_argmax_channels(__global const float *x, __global float *y, int nch, ulong nvox)
{
    ulong v = get_global_id(0);
    if (v >= nvox)
        return;
    __global const float *p = x + v * (ulong)nch;
    int best = 0;
    for (int c = 1; c < nch; c++)
        if (p[c] > p[best])
            best = c;
    y[v] = (float)best;
}

/* §6.3 step 10, one work-item per output element: y[v, c] = (lut[(int)lab[v]] == c); labels outside 0..nlut-1 and
 * LUT entries -1 give 0. */
__kernel void vxm_one_hot(__global const float *lab, __global float *y, __global const int *lut, int nlut, int nch,
                          ulong n)
{
    ulong e = get_global_id(0);
    if (e >= n)
        return;
    int li = vxm_synth_label(lab[e / (ulong)nch], nlut);
    y[e] = (li >= 0 && lut[li] == (int)(e % (ulong)nch)) ? 1.0f : 0.0f;
}

/* ELU (training doc §4.2): y = x > 0 ? x : exp(x) - 1. */
__kernel void vxm_elu(__global const float *x, __global float *y, ulong n)
{
    ulong e = get_global_id(0);
    if (e >= n)
        return;
    float v = x[e];
    y[e] = v > 0.0f ? v : exp(v) - 1.0f;
}

/* dx = dy (x > 0 ? 1 : exp(x)), from the op's input x; dx may be dy. */
__kernel void vxm_elu_backward(__global const float *x, __global const float *dy, __global float *dx, ulong n)
{
    ulong e = get_global_id(0);
    if (e >= n)
        return;
    float v = x[e];
    dx[e] = v > 0.0f ? dy[e] : dy[e] * exp(v);
}

/* y = a x + b z; y may alias x or z. */
__kernel void vxm_blend(__global const float *x, __global const float *z, __global float *y, float a, float b,
                        ulong n)
{
    ulong e = get_global_id(0);
    if (e < n)
        y[e] = a * x[e] + b * z[e];
}
