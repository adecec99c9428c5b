/* The spatial transformer (spec §4.1-§4.4), its backward pass (training doc §2.7) and the dense displacement of
 * an affine matrix (§4.5). */
#include <stdlib.h>
#include <string.h>

#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_sample.h"

/* Checks shared by the transform and its backward: image, displacement (ndim channels) and a grid-shaped tensor
 * `y` with the image's channels (the output, or the output gradient). */
static vxm_status st_check(vxm_backend *be, const char *op, const vxm_tensor *img, const vxm_tensor *disp, int ndim,
                           const vxm_tensor *y, const char *yname)
{
    vxm_status st;
    if ((st = cpu_check_tensor(be, img, op, "image")) || (st = cpu_check_tensor(be, disp, op, "displacement")) ||
        (st = cpu_check_tensor(be, y, op, yname)))
        return st;
    if (ndim < 1 || ndim > 3)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: ndim %d not in 1..3", op, ndim);
    if (disp->channels != ndim)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: displacement has %d channels, expected %d", op,
                         disp->channels, ndim);
    if ((st = cpu_check_same(be, disp, y, 0, op, "displacement", yname)))
        return st;
    if (y->channels != img->channels)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %s has %d channels, image %d", op, yname, y->channels,
                         img->channels);
    if (!cpu_sample_fits(img->shape) || !cpu_sample_fits(disp->shape))
        return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "%s: %dx%dx%d voxels is too large", op, img->shape[0],
                         img->shape[1], img->shape[2]);
    return VXM_OK;
}

vxm_status cpu_spatial_transform(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, int ndim,
                                 vxm_interp interp, int use_fill, float fill, vxm_tensor *y)
{
    static const char op[] = "spatial_transform";
    vxm_status st;
    if ((st = st_check(be, op, img, disp, ndim, y, "output")))
        return st;
    if (interp != VXM_INTERP_LINEAR && interp != VXM_INTERP_NEAREST)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: unknown interpolation %d", op, (int)interp);
    if (y->buf == img->buf || y->buf == disp->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias an input", op);
    cpu_sample_dense(img->buf->data, img->shape, img->channels, disp->buf->data, disp->shape, ndim, interp, use_fill,
                     fill, 0, y->buf->data, cpu_threads(be));
    return VXM_OK;
}

/* ---- backward of the linear transform (training doc §0, §2.7) ----------------------------------------------
 * The sampling locations and corner weights are recomputed exactly as the forward computes them (float32
 * p = float(x) + u, cpu_lin_axis_at), so the derivative is one-sided where TF's is: the floor and the corners are
 * constants, and the clamp passes the gradient for 0 <= p <= n-1 only.  With w_lo = c - clamp(p) and
 * w_hi = 1 - w_lo, d(value)/dp_d = sum over the corners of +-(product of the other two axes' weights) * V (+ for
 * the hi corner): the forward difference V[k+1] - V[k] at an integer interior p = k, 0 at p = n-1 where both
 * corners coincide. */

typedef struct st_back {
    const float *img;
    int n[3], C; /* image shape, channels */
    const float *disp;
    int m[3], ndim; /* grid (displacement) shape */
    const float *dy;
    int use_fill;
} st_back;

/* Location p and corners a of grid voxel s, as in cpu_sample_dense.  Returns nonzero when use_fill replaces the
 * voxel by the fill value (location outside [0, n-1] on some axis, §4.3): such voxels pass no gradient. */
static int st_locate(const st_back *B, size_t s, float p[3], cpu_lin_axis a[3])
{
    const int first = 3 - B->ndim;
    const size_t m12 = (size_t)B->m[1] * (size_t)B->m[2];
    const int x[3] = {(int)(s / m12), (int)(s / (size_t)B->m[2] % (size_t)B->m[1]), (int)(s % (size_t)B->m[2])};
    const float *u = B->disp + s * (size_t)B->ndim;
    int outside = 0;
    for (int d = 0; d < 3; d++) {
        p[d] = d < first ? (float)x[d] : (float)x[d] + u[d - first];
        a[d] = cpu_lin_axis_at(p[d], B->n[d]);
        outside |= (p[d] < 0.0f) | (p[d] > (float)(B->n[d] - 1));
    }
    return B->use_fill && outside;
}

/* ddisp of grid voxel s: sum over channels of dy * d(interp)/dp_d for each displaced axis d. */
static void st_ddisp_voxel(const st_back *B, size_t s, float *out)
{
    float p[3];
    cpu_lin_axis a[3];
    const int first = 3 - B->ndim;
    if (st_locate(B, s, p, a)) {
        for (int c = 0; c < B->ndim; c++)
            out[c] = 0.0f;
        return;
    }
    const size_t C = (size_t)B->C, row = (size_t)B->n[2] * C, plane = (size_t)B->n[1] * row;
    const float *v000 = B->img + (size_t)a[0].lo * plane + (size_t)a[1].lo * row + (size_t)a[2].lo * C;
    const size_t d0 = (size_t)(a[0].hi - a[0].lo) * plane, d1 = (size_t)(a[1].hi - a[1].lo) * row;
    const size_t d2 = (size_t)(a[2].hi - a[2].lo) * C;
    const float *v010 = v000 + d1, *v100 = v000 + d0, *v110 = v100 + d1;
    /* weights of the other two axes, (lo, hi) x (lo, hi) in lexicographic order */
    const float q00 = a[1].wlo * a[2].wlo, q01 = a[1].wlo * a[2].whi, q10 = a[1].whi * a[2].wlo,
                q11 = a[1].whi * a[2].whi;
    const float r00 = a[0].wlo * a[2].wlo, r01 = a[0].wlo * a[2].whi, r10 = a[0].whi * a[2].wlo,
                r11 = a[0].whi * a[2].whi;
    const float t00 = a[0].wlo * a[1].wlo, t01 = a[0].wlo * a[1].whi, t10 = a[0].whi * a[1].wlo,
                t11 = a[0].whi * a[1].whi;
    const float *dyv = B->dy + s * C;
    float g[3] = {0.0f, 0.0f, 0.0f};
    for (size_t k = 0; k < C; k++) {
        float V000 = v000[k], V001 = v000[k + d2], V010 = v010[k], V011 = v010[k + d2];
        float V100 = v100[k], V101 = v100[k + d2], V110 = v110[k], V111 = v110[k + d2];
        float e0 = q00 * (V100 - V000) + q01 * (V101 - V001) + q10 * (V110 - V010) + q11 * (V111 - V011);
        float e1 = r00 * (V010 - V000) + r01 * (V011 - V001) + r10 * (V110 - V100) + r11 * (V111 - V101);
        float e2 = t00 * (V001 - V000) + t01 * (V011 - V010) + t10 * (V101 - V100) + t11 * (V111 - V110);
        g[0] += dyv[k] * e0;
        g[1] += dyv[k] * e1;
        g[2] += dyv[k] * e2;
    }
    for (int c = 0; c < B->ndim; c++) {
        int d = first + c;
        out[c] = (p[d] >= 0.0f && p[d] <= (float)(B->n[d] - 1)) ? g[d] : 0.0f; /* clip_by_value gradient */
    }
}

/* Adds the contributions of bucket `key` (the sources whose low corner row is (lo0, lo1), in source order) to
 * dimg: dy times the trilinear weights (products in the forward's order) at the 8 corners, which lie in the image
 * rows {lo0, hi0} x {lo1, hi1} with hi = lo + 1 (or lo where the clamp merges the corners). */
static void st_scatter_bucket(const st_back *B, const int *order, const int *start, int key, float *dimg)
{
    const size_t C = (size_t)B->C, rowlen = (size_t)B->n[2] * C;
    for (int t = start[key]; t < start[key + 1]; t++) {
        size_t s = (size_t)order[t];
        float p[3];
        cpu_lin_axis a[3];
        st_locate(B, s, p, a);
        const float *dyv = B->dy + s * C;
        for (int A = 0; A < 2; A++)
            for (int Bc = 0; Bc < 2; Bc++) {
                size_t r = (size_t)(A ? a[0].hi : a[0].lo) * (size_t)B->n[1] + (size_t)(Bc ? a[1].hi : a[1].lo);
                float wab = (A ? a[0].whi : a[0].wlo) * (Bc ? a[1].whi : a[1].wlo);
                float wl = wab * a[2].wlo, wh = wab * a[2].whi;
                float *dl = dimg + r * rowlen + (size_t)a[2].lo * C, *dh = dimg + r * rowlen + (size_t)a[2].hi * C;
                for (size_t k = 0; k < C; k++)
                    dl[k] += wl * dyv[k];
                for (size_t k = 0; k < C; k++)
                    dh[k] += wh * dyv[k];
            }
    }
}

/* dimg = scatter-add of dy with the trilinear weights, deterministic without atomics: the sources are bucketed
 * by low-corner row (lo0, lo1) with a stable counting sort, and the buckets are processed in four passes by the
 * parity of (lo0, lo1).  Within a pass two buckets write disjoint image rows (their rows lo..lo+1 differ by >= 2
 * on some axis), so they run in parallel; every element of dimg therefore receives its contributions in one
 * fixed order (pass, then source order), whatever the thread count. */
static vxm_status st_scatter(vxm_backend *be, const st_back *B, float *dimg)
{
    const size_t ng = (size_t)B->m[0] * (size_t)B->m[1] * (size_t)B->m[2];
    const int n0 = B->n[0], n1 = B->n[1];
    const long nrow = (long)n0 * n1;
    int *key = malloc(ng * sizeof *key), *order = malloc(ng * sizeof *order);
    int *start = calloc((size_t)nrow + 1, sizeof *start), *fillpos = malloc(((size_t)nrow + 1) * sizeof *fillpos);
    if (!key || !order || !start || !fillpos) {
        free(key);
        free(order);
        free(start);
        free(fillpos);
        return cpu_nomem(be, ng * 2 * sizeof *key + ((size_t)nrow + 1) * 2 * sizeof *start);
    }
    const int nt = cpu_threads(be), par = ng * (size_t)B->C >= CPU_PAR_MIN;
    const long ngl = (long)ng;
    const size_t rowlen = (size_t)B->n[2] * (size_t)B->C;
#pragma omp parallel for num_threads(nt) schedule(static) if (par)
    for (long s = 0; s < ngl; s++) {
        float p[3];
        cpu_lin_axis a[3];
        key[s] = st_locate(B, (size_t)s, p, a) ? -1 : a[0].lo * n1 + a[1].lo;
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (par)
    for (long r = 0; r < nrow; r++)
        memset(dimg + (size_t)r * rowlen, 0, rowlen * sizeof *dimg);
    for (size_t s = 0; s < ng; s++)
        if (key[s] >= 0)
            start[key[s] + 1]++;
    for (long r = 0; r < nrow; r++)
        start[r + 1] += start[r];
    memcpy(fillpos, start, ((size_t)nrow + 1) * sizeof *start);
    for (size_t s = 0; s < ng; s++)
        if (key[s] >= 0)
            order[fillpos[key[s]]++] = (int)s;
    for (int pass = 0; pass < 4; pass++) {
        const int c0 = pass >> 1, c1 = pass & 1;
        const long nb0 = (n0 - c0 + 1) / 2, nb1 = (n1 - c1 + 1) / 2, items = nb0 * nb1;
#pragma omp parallel for num_threads(nt) schedule(static) if (par)
        for (long it = 0; it < items; it++)
            st_scatter_bucket(B, order, start, (int)((c0 + 2 * (it / nb1)) * n1 + c1 + 2 * (it % nb1)), dimg);
    }
    free(key);
    free(order);
    free(start);
    free(fillpos);
    return VXM_OK;
}

vxm_status cpu_spatial_transform_backward(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp,
                                          const vxm_tensor *dy, int ndim, int use_fill, vxm_tensor *dimg,
                                          vxm_tensor *ddisp)
{
    static const char op[] = "spatial_transform_backward";
    vxm_status st;
    if ((st = st_check(be, op, img, disp, ndim, dy, "output gradient")))
        return st;
    if (dimg && ((st = cpu_check_tensor(be, dimg, op, "image gradient")) ||
                 (st = cpu_check_same(be, img, dimg, 1, op, "image", "image gradient"))))
        return st;
    if (ddisp && ((st = cpu_check_tensor(be, ddisp, op, "displacement gradient")) ||
                  (st = cpu_check_same(be, disp, ddisp, 1, op, "displacement", "displacement gradient"))))
        return st;
    const vxm_tensor *outs[2] = {dimg, ddisp};
    for (int k = 0; k < 2; k++)
        if (outs[k] && (outs[k]->buf == img->buf || outs[k]->buf == disp->buf || outs[k]->buf == dy->buf ||
                        (k == 1 && dimg && dimg->buf == ddisp->buf)))
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: gradients must not alias inputs or each other", op);
    st_back B = {img->buf->data, {img->shape[0], img->shape[1], img->shape[2]}, img->channels, disp->buf->data,
                 {disp->shape[0], disp->shape[1], disp->shape[2]}, ndim, dy->buf->data, use_fill};
    if (ddisp) {
        const long ng = (long)(vxm_tensor_numel(disp) / (size_t)ndim);
        float *o = ddisp->buf->data;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (vxm_tensor_numel(dy) >= CPU_PAR_MIN)
        for (long s = 0; s < ng; s++)
            st_ddisp_voxel(&B, (size_t)s, o + (size_t)s * (size_t)ndim);
    }
    if (dimg)
        return st_scatter(be, &B, dimg->buf->data);
    return VXM_OK;
}

/* Follows voxelmorph's affine_to_dense_shift: with m = x - c (c = (n-1)/2, or 0 without shift_center, exact in
 * float32), loc = A m + t, displacement = loc - m.  loc is accumulated in double and rounded once to float32
 * (TF does a float32 matmul; the two agree to an ulp of the coordinate), the final subtraction is float32 as in
 * TF. */
vxm_status cpu_affine_to_disp(vxm_backend *be, const float *mat, int ndim, int shift_center, vxm_tensor *y)
{
    static const char op[] = "affine_to_disp";
    vxm_status st;
    if ((st = cpu_check_tensor(be, y, op, "output")))
        return st;
    if (ndim < 1 || ndim > 3)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: ndim %d not in 1..3", op, ndim);
    if (!mat)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: no matrix", op);
    if (y->channels != ndim)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output has %d channels, expected %d", op, y->channels,
                         ndim);
    int first = 3 - ndim;
    for (int d = 0; d < first; d++)
        if (y->shape[d] != 1)
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %d-D field needs size 1 along axis %d, got %d", op,
                             ndim, d, y->shape[d]);
    float center[3] = {0, 0, 0};
    if (shift_center)
        for (int d = 0; d < ndim; d++)
            center[d] = (float)(y->shape[first + d] - 1) * 0.5f;
    const int *s = y->shape;
    float *out = y->buf->data;
    long rows = (long)s[0] * s[1];
    int par = vxm_tensor_numel(y) >= CPU_PAR_MIN;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (par)
    for (long r = 0; r < rows; r++) {
        int x[3] = {(int)(r / s[1]), (int)(r % s[1]), 0};
        for (x[2] = 0; x[2] < s[2]; x[2]++) {
            float m[3];
            for (int d = 0; d < ndim; d++)
                m[d] = (float)x[first + d] - center[d];
            float *o = out + ((size_t)r * (size_t)s[2] + (size_t)x[2]) * (size_t)ndim;
            for (int d = 0; d < ndim; d++) {
                const float *row = mat + (size_t)d * (size_t)(ndim + 1);
                double loc = row[ndim];
                for (int e = 0; e < ndim; e++)
                    loc += (double)row[e] * (double)m[e];
                o[d] = (float)loc - m[d];
            }
        }
    }
    return VXM_OK;
}
