/* Jacobian determinant of a dense displacement field, as voxelmorph/py/utils.py jacobian_determinant (spec
 * §9.3), computed in double precision.
 *
 * The deformation is phi(x) = x + u(x), x = the voxel index along the spatial axes ('ij' grid), u = the warp
 * (channel c = displacement along spatial axis c).  Like VoxelMorph, which calls np.gradient(disp + grid), we
 * take the finite differences of f_c(x) = (double)u_c(x) + x_c, with unit spacing and NumPy's edge_order=1
 * rules along each spatial axis a of length n, at index i:
 *
 *     interior (0 < i < n-1):   d f_c / d x_a = (f_c(i+1) - f_c(i-1)) / 2        (central difference)
 *     first    (i == 0):        d f_c / d x_a =  f_c(1)   - f_c(0)               (one-sided, first order)
 *     last     (i == n-1):      d f_c / d x_a =  f_c(n-1) - f_c(n-2)             (one-sided, first order)
 *     n == 2:                   both voxels get f_c(1) - f_c(0)                  (the one-sided rules)
 *     n == 1:                   NumPy raises; we take d u_c / d x_a = 0, i.e. d f_c / d x_a = [c == a], so a
 *                               one-voxel-thick 3-D field behaves like the 2-D field of its other axes.
 *
 * (the neighbours' f_c values are formed exactly as NumPy forms them: float32 displacement plus integer
 * index in double, so the differences match np.gradient bit for bit.)  The matrix M[a][c] = d f_c / d x_a
 * has rows = derivative axis, columns = component, and
 *     3-D: det = M00 (M11 M22 - M12 M21) - M01 (M10 M22 - M12 M20) + M02 (M10 M21 - M11 M20)
 *     2-D: det = M00 M11 - M10 M01
 * in exactly VoxelMorph's order of operations (Jdet0 - Jdet1 + Jdet2).  For 2-D warps (ndim 2, shape
 * (1, H, W), 2 channels) the spatial axes are array axes 1 and 2.  One-sided differences are exact for
 * linear fields, so u = A x gives det(I + A) at every voxel, borders included. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

vxm_status vxm_eval_check_warp(vxm_context *ctx, const vxm_volume *warp, const char *subject)
{
    const char *s = subject ? subject : "warp";
    if (!warp || !warp->data)
        return vxm_error(ctx, VXM_EINVAL, s, "no warp given");
    if ((warp->ndim != 2 && warp->ndim != 3) || warp->channels != warp->ndim ||
        (warp->ndim == 2 && warp->shape[0] != 1) || warp->shape[0] < 1 || warp->shape[1] < 1 || warp->shape[2] < 1)
        return vxm_error(ctx, VXM_ESHAPE, s,
                         "a dense warp needs as many channels as spatial dimensions (2 or 3); this one is %d-D "
                         "with %d channel(s)",
                         warp->ndim, warp->channels);
    size_t n = vxm_volume_numel(warp);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(warp->data[i]))
            return vxm_error(ctx, VXM_ENUMERIC, s, "the warp contains NaN or Inf (voxel %zu)",
                             i / (size_t)warp->channels);
    return VXM_OK;
}

/* d f_c / d x along array axis `ax` at idx; `cax` is the array axis of component c. */
static double grad(const vxm_volume *w, const int idx[3], int ax, int c, int cax)
{
    int n = w->shape[ax], i = idx[ax];
    if (n == 1)
        return cax == ax ? 1.0 : 0.0;
    size_t stride = ax == 0 ? (size_t)w->shape[1] * w->shape[2] : ax == 1 ? (size_t)w->shape[2] : 1;
    size_t base = ((size_t)idx[0] * w->shape[1] + idx[1]) * w->shape[2] + idx[2];
    size_t C = (size_t)w->channels;
    /* f_c at index k along `ax`: displacement + grid coordinate x_c (which changes along ax only if cax == ax) */
#define F(k) ((double)w->data[(base + ((size_t)(k) - (size_t)i) * stride) * C + (size_t)c] + \
              (double)(cax == ax ? (k) : idx[cax]))
    if (i == 0)
        return (F(1) - F(0)) / 1.0;
    if (i == n - 1)
        return (F(n - 1) - F(n - 2)) / 1.0;
    return (F(i + 1) - F(i - 1)) / 2.0;
#undef F
}

double vxm_eval_det_at(const vxm_volume *w, int i0, int i1, int i2)
{
    const int idx[3] = {i0, i1, i2};
    if (w->ndim == 2) {
        /* spatial axes 0, 1 are array axes 1, 2; component c runs along array axis c + 1 */
        double dx0 = grad(w, idx, 1, 0, 1), dx1 = grad(w, idx, 1, 1, 2);
        double dy0 = grad(w, idx, 2, 0, 1), dy1 = grad(w, idx, 2, 1, 2);
        return dx0 * dy1 - dy0 * dx1;
    }
    double m[3][3];
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 3; c++)
            m[a][c] = grad(w, idx, a, c, c);
    double j0 = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]);
    double j1 = m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]);
    double j2 = m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    return j0 - j1 + j2;
}

vxm_status vxm_jacobian_determinant_f64(vxm_context *ctx, const vxm_volume *warp, double **det)
{
    *det = NULL;
    vxm_status st = vxm_eval_check_warp(ctx, warp, NULL);
    if (st)
        return st;
    size_t n = (size_t)warp->shape[0] * warp->shape[1] * warp->shape[2];
    double *d = malloc(sizeof(double) * n);
    if (!d)
        return vxm_error(ctx, VXM_ENOMEM, "jacobian", "out of memory");
    size_t o = 0;
    for (int i = 0; i < warp->shape[0]; i++)
        for (int j = 0; j < warp->shape[1]; j++)
            for (int k = 0; k < warp->shape[2]; k++)
                d[o++] = vxm_eval_det_at(warp, i, j, k);
    *det = d;
    return VXM_OK;
}

vxm_status vxm_jacobian_determinant(vxm_context *ctx, const vxm_volume *warp, vxm_volume **det)
{
    *det = NULL;
    double *d = NULL;
    vxm_status st = vxm_jacobian_determinant_f64(ctx, warp, &d);
    if (st)
        return st;
    vxm_volume *v = vxm_volume_new(warp->ndim, warp->shape, 1);
    if (!v) {
        free(d);
        return vxm_error(ctx, VXM_ENOMEM, "jacobian", "out of memory");
    }
    if (warp->geom && !(v->geom = vxm_geometry_clone(warp->geom))) {
        free(d);
        vxm_volume_free(v);
        return vxm_error(ctx, VXM_ENOMEM, "jacobian", "out of memory");
    }
    size_t n = vxm_volume_numel(v);
    for (size_t i = 0; i < n; i++)
        v->data[i] = (float)d[i];
    free(d);
    *det = v;
    return VXM_OK;
}

vxm_status vxm_jacobian_stats(vxm_context *ctx, const vxm_volume *warp, vxm_jacobian_summary *s)
{
    memset(s, 0, sizeof *s);
    vxm_status st = vxm_eval_check_warp(ctx, warp, NULL);
    if (st)
        return st;
    double sum = 0, mn = INFINITY, mx = -INFINITY;
    size_t nonpos = 0, n = 0;
    for (int i = 0; i < warp->shape[0]; i++)
        for (int j = 0; j < warp->shape[1]; j++)
            for (int k = 0; k < warp->shape[2]; k++) {
                double d = vxm_eval_det_at(warp, i, j, k);
                nonpos += d <= 0;
                sum += d;
                mn = d < mn ? d : mn;
                mx = d > mx ? d : mx;
                n++;
            }
    s->voxels = n;
    s->nonpositive = nonpos;
    s->fraction = n ? (double)nonpos / (double)n : 0;
    s->min = mn;
    s->max = mx;
    s->mean = n ? sum / (double)n : 0;
    return VXM_OK;
}

size_t vxm_jacobian_count_nonpositive(const vxm_volume *det)
{
    size_t n = vxm_volume_numel(det), c = 0;
    for (size_t i = 0; i < n; i++)
        c += det->data[i] <= 0;
    return c;
}
