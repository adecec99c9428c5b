/* Shared by every kernel file (the cl/ files are concatenated in sorted order into one program; this one sorts
 * first).  OpenCL C 1.2, float32 only, buffers only (no images, no doubles: Mesa rusticl on llvmpipe has neither
 * doubles nor reliable image paths).
 *
 * Floating point: no contraction of a*b+c into fma unless written explicitly with fma() (which is exact), so the
 * elementwise and interpolation arithmetic rounds exactly like the plain-C CPU backend compiled with -std=c11. */
#pragma OPENCL FP_CONTRACT OFF

/* Per-axis set-up of the clamped linear interpolation of spec §4.2, all in float32:
 *   q = clamp(p, 0, n-1); f = clamp(floor(p), 0, n-1); c = clamp(f+1, 0, n-1); wlo = c - q; whi = 1 - wlo.
 * Clamping is done in float before the conversion to int, so huge or non-finite coordinates stay defined. */
static inline void vxm_axis_linear(float p, int n, int *lo, int *hi, float *wlo, float *whi)
{
    float top = (float)(n - 1);
    float q = fmin(fmax(p, 0.0f), top);
    float f = fmin(fmax(floor(p), 0.0f), top);
    float c = fmin(f + 1.0f, top);
    float wl = c - q;
    *lo = (int)f;
    *hi = (int)c;
    *wlo = wl;
    *whi = 1.0f - wl;
}

/* Nearest index of spec §4.4: round half to even (rint under the default rounding mode), then clamp. */
static inline int vxm_axis_nearest(float p, int n)
{
    float r = fmin(fmax(rint(p), 0.0f), (float)(n - 1));
    return (int)r;
}

/* Out of [0, n-1] (strict inequalities) for the fill value of spec §4.3 (a NaN location is not "outside", as on the
 * CPU backend; the clamps then treat it as 0). */
static inline int vxm_axis_outside(float p, int n)
{
    return p < 0.0f || p > (float)(n - 1);
}

/* The up to 8 corners (offsets of channel 0) and weights of the clamped linear interpolation at (p0, p1, p2) in
 * an n0 x n1 x n2 grid with `nch` channels per voxel.  The first `fixed` axes (0..2) are not displaced: their
 * coordinate is an integer grid index, which linear interpolation reproduces exactly, so they contribute a single
 * corner (the index, clamped) of weight 1 -- e.g. 2-D data (axis 0 fixed) sums 4 corners with weights w1*w2, as
 * TF's 2-D interpn does, and bit-identically to an 8-corner sum whose extra weights are 0.  Corner order is TF's
 * lexicographic order and the weight product is (w0*w1)*w2 (spec §4.2). */
typedef struct vxm_corners {
    ulong off[8];
    float w[8];
    int n;
} vxm_corners;

static inline void vxm_axis_fixed(float p, int n, int *lo, int *hi, float *wlo, float *whi)
{
    *lo = *hi = (int)fmin(fmax(p, 0.0f), (float)(n - 1));
    *wlo = *whi = 1.0f;
}

static inline void vxm_corners_linear(vxm_corners *cr, int n0, int n1, int n2, int nch, int fixed, float p0,
                                      float p1, float p2)
{
    int i[2], j[2], k[2];
    float wi[2], wj[2], wk[2];
    if (fixed > 0)
        vxm_axis_fixed(p0, n0, &i[0], &i[1], &wi[0], &wi[1]);
    else
        vxm_axis_linear(p0, n0, &i[0], &i[1], &wi[0], &wi[1]);
    if (fixed > 1)
        vxm_axis_fixed(p1, n1, &j[0], &j[1], &wj[0], &wj[1]);
    else
        vxm_axis_linear(p1, n1, &j[0], &j[1], &wj[0], &wj[1]);
    vxm_axis_linear(p2, n2, &k[0], &k[1], &wk[0], &wk[1]);
    int na = fixed > 0 ? 1 : 2, nb = fixed > 1 ? 1 : 2;
    int t = 0;
    for (int a = 0; a < na; a++)
        for (int b = 0; b < nb; b++)
            for (int d = 0; d < 2; d++) {
                cr->w[t] = (wi[a] * wj[b]) * wk[d];
                cr->off[t] = (((ulong)i[a] * (ulong)n1 + (ulong)j[b]) * (ulong)n2 + (ulong)k[d]) * (ulong)nch;
                t++;
            }
    cr->n = t;
}

/* Straight-line clamped trilinear interpolation of NCH (a compile-time constant) channels of IMG (n0 x n1 x n2)
 * at (P0, P1, P2), written to OUT[0..NCH-1]: the same corner order, weight products and sums as vxm_corners_*
 * with no fixed axes, so results are bit-identical to the generic path. */
#define VXM_LINEAR3(IMG, N0, N1, N2, NCH, P0, P1, P2, OUT)                                                           \
    {                                                                                                                \
        int li[2], lj[2], lk[2];                                                                                     \
        float lwi[2], lwj[2], lwk[2];                                                                                \
        vxm_axis_linear((P0), (N0), &li[0], &li[1], &lwi[0], &lwi[1]);                                               \
        vxm_axis_linear((P1), (N1), &lj[0], &lj[1], &lwj[0], &lwj[1]);                                               \
        vxm_axis_linear((P2), (N2), &lk[0], &lk[1], &lwk[0], &lwk[1]);                                               \
        float lacc[NCH];                                                                                             \
        _Pragma("unroll") for (int c = 0; c < (NCH); c++) lacc[c] = 0.0f;                                            \
        _Pragma("unroll") for (int t = 0; t < 8; t++) {                                                              \
            int a = t >> 2, b = (t >> 1) & 1, d = t & 1;                                                             \
            float wt = (lwi[a] * lwj[b]) * lwk[d];                                                                   \
            __global const float *q =                                                                                \
                (IMG) + (((ulong)li[a] * (ulong)(N1) + (ulong)lj[b]) * (ulong)(N2) + (ulong)lk[d]) * (ulong)(NCH);   \
            _Pragma("unroll") for (int c = 0; c < (NCH); c++) lacc[c] += wt * q[c];                                  \
        }                                                                                                            \
        _Pragma("unroll") for (int c = 0; c < (NCH); c++)(OUT)[c] = lacc[c];                                         \
    }

/* Sampling location of grid voxel (x0, x1, x2) displaced by the ndim channels at u (channel c along spatial axis
 * 3 - ndim + c): one float32 addition per displaced axis (spec §4.1), times `scale` (1, or 2^-T, exact). */
static inline void vxm_location(int x0, int x1, int x2, __global const float *u, int ndim, float scale,
                                float *p)
{
    int first = 3 - ndim;
    p[0] = first > 0 ? (float)x0 : (float)x0 + u[0] * scale;
    p[1] = first > 1 ? (float)x1 : (float)x1 + u[1 - first] * scale;
    p[2] = (float)x2 + u[2 - first] * scale;
}

/* Interpolated value of channel c: sum over the corners, in order, of w * (scale * V); `scale` is 1 or an exact
 * power of two (scaling and squaring reads v / 2^T on the fly), so V * scale is exact. */
static inline float vxm_corners_eval(const vxm_corners *cr, __global const float *img, int c, float scale)
{
    float acc = 0.0f;
    for (int t = 0; t < cr->n; t++)
        acc += cr->w[t] * (img[cr->off[t] + (ulong)c] * scale);
    return acc;
}

/* Linear voxel index -> (x0, x1, x2) of a grid n0 x n1 x n2 (voxel counts fit in 32 bits; checked on the host). */
static inline void vxm_unravel(uint v, int n1, int n2, int *x0, int *x1, int *x2)
{
    *x2 = (int)(v % (uint)n2);
    uint t = v / (uint)n2;
    *x1 = (int)(t % (uint)n1);
    *x0 = (int)(t / (uint)n1);
}
