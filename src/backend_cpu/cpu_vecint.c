/* Scaling and squaring (spec §5): w = v / 2^T, then T times w <- w + Interp(w, x + w) with the clamped linear
 * sampling of §4.2.  Each step reads only the previous field (double buffering, never in place); the buffers
 * alternate so that the last step writes y. */
#include <string.h>

#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_sample.h"

vxm_status cpu_vecint(vxm_backend *be, const vxm_tensor *v, int ndim, int steps, vxm_tensor *y)
{
    static const char op[] = "vecint";
    vxm_status st;
    if ((st = cpu_check_tensor(be, v, op, "field")) || (st = cpu_check_tensor(be, y, op, "output")))
        return st;
    if (ndim < 1 || ndim > 3)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: ndim %d not in 1..3", op, ndim);
    if (steps < 0 || steps > 64)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: %d steps not in 0..64", op, steps);
    if (v->channels != ndim)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: field has %d channels, expected %d", op, v->channels,
                         ndim);
    if ((st = cpu_check_same(be, v, y, 1, op, "field", "output")))
        return st;
    if (y->buf == v->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias the input", op);
    if (!cpu_sample_fits(v->shape))
        return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "%s: %dx%dx%d voxels is too large", op, v->shape[0],
                         v->shape[1], v->shape[2]);
    size_t n = vxm_tensor_numel(v);
    const float *src = v->buf->data;
    float *dst = y->buf->data;
    if (steps == 0) {
        memcpy(dst, src, n * sizeof(float));
        return VXM_OK;
    }
    /* the second buffer through the backend's pool: the same field size every registration, no page faults */
    vxm_buffer *tbuf;
    if ((st = be->ops->buffer_alloc(be, n, &tbuf)))
        return st;
    float *tmp = tbuf->data;
    int nt = cpu_threads(be);
    /* Buffer of step i (0 = the scaled input): y when steps - i is even, so step `steps` lands in y. */
    float *cur = (steps % 2 == 0) ? dst : tmp;
    float *next = (cur == dst) ? tmp : dst;
    float inv = ldexpf(1.0f, -steps); /* multiplying by 2^-T is exactly the division by 2^T */
#pragma omp parallel for num_threads(nt) schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        cur[i] = src[i] * inv;
    for (int t = 0; t < steps; t++) {
        cpu_sample_dense(cur, v->shape, ndim, cur, v->shape, ndim, VXM_INTERP_LINEAR, 0, 0.0f, 1, next, nt);
        float *sw = cur;
        cur = next;
        next = sw;
    }
    be->ops->buffer_free(be, tbuf);
    return VXM_OK;
}
