/* Backward ops of the CPU backend's element-wise and data-movement layers (training doc §2.7; backend.h
 * documents each): LeakyReLU, max-pooling, nearest upsampling, the channel slice that undoes a concatenation,
 * gradient accumulation (add) and the log-variance gradient of the sampling layer.  The convolution's backward
 * ops are in cpu_conv_backward.c, the resize's next to its forward in cpu_resize.c.
 *
 * Every output element is written by exactly one thread from a fixed-order computation, so results do not depend
 * on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu/cpu_internal.h"

#ifdef _OPENMP
#include <omp.h>
static int omp_thread(void)
{
    return omp_get_thread_num();
}
#else
static int omp_thread(void)
{
    return 0;
}
#endif

/* §2.7: slope 1 where ref > 0, alpha elsewhere (x == 0 takes alpha, as TF's LeakyReluGrad). */
vxm_status cpu_leaky_relu_backward(vxm_backend *be, const vxm_tensor *ref, const vxm_tensor *dy, float alpha,
                                   vxm_tensor *dx)
{
    static const char op[] = "leaky_relu_backward";
    vxm_status st;
    if ((st = cpu_check_tensor(be, ref, op, "reference")) || (st = cpu_check_tensor(be, dy, op, "gradient")) ||
        (st = cpu_check_tensor(be, dx, op, "output")) || (st = cpu_check_same(be, ref, dy, 1, op, "reference", "gradient")) ||
        (st = cpu_check_same(be, dy, dx, 1, op, "gradient", "output")))
        return st;
    size_t n = vxm_tensor_numel(dy);
    const float *r = ref->buf->data, *g = dy->buf->data;
    float *out = dx->buf->data;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = r[i] > 0.0f ? g[i] : alpha * g[i];
    return VXM_OK;
}

static vxm_status check_factors(vxm_backend *be, const int f[3], const char *op)
{
    if (!f || f[0] < 1 || f[1] < 1 || f[2] < 1)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: factors must be >= 1", op);
    return VXM_OK;
}

/* Checks of the pooling/upsampling pair: `big` is f times `small` per axis (exactly, or with pooling's floor when
 * `floor_ok`), same channels, and the output `out` aliases neither. */
static vxm_status check_blocks(vxm_backend *be, const char *op, const vxm_tensor *big, const vxm_tensor *small,
                               const int f[3], int floor_ok, const vxm_tensor *out)
{
    vxm_status st;
    if ((st = check_factors(be, f, op)) || (st = cpu_check_tensor(be, big, op, "full-size tensor")) ||
        (st = cpu_check_tensor(be, small, op, "reduced tensor")))
        return st;
    for (int d = 0; d < 3; d++) {
        int q = big->shape[d] / f[d];
        if (small->shape[d] != q || (!floor_ok && q * f[d] != big->shape[d]))
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: axis %d: %d is not %d / %d", op, d, small->shape[d],
                             big->shape[d], f[d]);
    }
    if (small->channels != big->channels)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %d channels against %d", op, small->channels,
                         big->channels);
    if ((out != big && big->buf == out->buf) || (out != small && small->buf == out->buf))
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias the input", op);
    return VXM_OK;
}

/* Block origin of output voxel (o0, o1, o2) in the pooled input, and the offset of block element (a, b, c). */
static size_t pool_at(const int s[3], const int f[3], size_t C, size_t o0, size_t o1, size_t o2, int a, int b, int c)
{
    return (((o0 * (size_t)f[0] + (size_t)a) * (size_t)s[1] + o1 * (size_t)f[1] + (size_t)b) * (size_t)s[2] +
            o2 * (size_t)f[2] + (size_t)c) * C;
}

/* §2.7 / training doc §0: the block maximum is recomputed exactly as cpu_maxpool does (first value, then
 * v > max, channel by channel); with tie_tol >= 0 every input with |x - max| < tie_tol gets the block's whole
 * gradient (TF CPU MaxPool3D), with tie_tol < 0 the first maximum in row-major block order (MaxPool2D).  Every
 * element of a complete block is written (gradient or 0), so only the leftovers need zeroing. */
vxm_status cpu_maxpool_backward(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, const int f[3],
                                float tie_tol, vxm_tensor *dx)
{
    static const char op[] = "maxpool_backward";
    vxm_status st;
    if ((st = cpu_check_tensor(be, dx, op, "output")) || (st = check_blocks(be, op, x, dy, f, 1, dx)) ||
        (st = cpu_check_same(be, x, dx, 1, op, "input", "output")))
        return st;
    const float *in = x->buf->data, *g = dy->buf->data;
    float *out = dx->buf->data;
    const int *s = x->shape, *m = dy->shape;
    size_t C = (size_t)x->channels;
    int par = vxm_tensor_numel(x) >= CPU_PAR_MIN;
    int nt = par ? cpu_threads(be) : 1;
    float *scratch = cpu_alloc_floats(2 * C * (size_t)nt); /* per thread: block maximum, first-maximum taken */
    if (!scratch)
        return cpu_nomem(be, 2 * C * (size_t)nt * sizeof(float));
    if (s[0] % f[0] || s[1] % f[1] || s[2] % f[2])
        memset(out, 0, vxm_tensor_numel(x) * sizeof(float));
    long rows = (long)m[0] * m[1];
#pragma omp parallel for num_threads(nt) schedule(static)
    for (long r = 0; r < rows; r++) {
        float *mx = scratch + 2 * C * (size_t)omp_thread(), *taken = mx + C;
        size_t o0 = (size_t)(r / m[1]), o1 = (size_t)(r % m[1]);
        for (size_t o2 = 0; o2 < (size_t)m[2]; o2++) {
            const float *gv = g + ((size_t)r * (size_t)m[2] + o2) * C;
            memcpy(mx, in + pool_at(s, f, C, o0, o1, o2, 0, 0, 0), C * sizeof(float));
            memset(taken, 0, C * sizeof(float));
            for (int pass = 0; pass < 2; pass++) /* pass 0: the maximum; pass 1: route the gradient */
                for (int a = 0; a < f[0]; a++)
                    for (int b = 0; b < f[1]; b++)
                        for (int c = 0; c < f[2]; c++) {
                            size_t at = pool_at(s, f, C, o0, o1, o2, a, b, c);
                            const float *v = in + at;
                            float *o = out + at;
                            if (pass == 0) {
                                for (size_t ch = 0; ch < C; ch++)
                                    mx[ch] = v[ch] > mx[ch] ? v[ch] : mx[ch];
                            } else if (tie_tol >= 0.0f) {
                                for (size_t ch = 0; ch < C; ch++)
                                    o[ch] = fabsf(v[ch] - mx[ch]) < tie_tol ? gv[ch] : 0.0f;
                            } else {
                                for (size_t ch = 0; ch < C; ch++) {
                                    int hit = taken[ch] == 0.0f && v[ch] == mx[ch];
                                    o[ch] = hit ? gv[ch] : 0.0f;
                                    taken[ch] = hit ? 1.0f : taken[ch];
                                }
                            }
                        }
        }
    }
    free(scratch);
    return VXM_OK;
}

/* §2.7: dx[i] = sum of dy over the f0*f1*f2 children of i, in row-major child order. */
vxm_status cpu_upsample_nearest_backward(vxm_backend *be, const vxm_tensor *dy, const int f[3], vxm_tensor *dx)
{
    static const char op[] = "upsample_nearest_backward";
    vxm_status st;
    if ((st = check_blocks(be, op, dy, dx, f, 0, dx)))
        return st;
    const float *g = dy->buf->data;
    float *out = dx->buf->data;
    const int *s = dy->shape, *m = dx->shape;
    size_t C = (size_t)dx->channels;
    long rows = (long)m[0] * m[1];
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (vxm_tensor_numel(dy) >= CPU_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        size_t i0 = (size_t)(r / m[1]), i1 = (size_t)(r % m[1]);
        float *orow = out + (size_t)r * (size_t)m[2] * C;
        memset(orow, 0, (size_t)m[2] * C * sizeof(float));
        for (int a = 0; a < f[0]; a++)
            for (int b = 0; b < f[1]; b++) {
                const float *grow = g + ((i0 * (size_t)f[0] + (size_t)a) * (size_t)s[1] + i1 * (size_t)f[1] +
                                         (size_t)b) * (size_t)s[2] * C;
                for (int i2 = 0; i2 < m[2]; i2++)
                    for (int c = 0; c < f[2]; c++) {
                        const float *v = grow + ((size_t)i2 * (size_t)f[2] + (size_t)c) * C;
                        float *o = orow + (size_t)i2 * C;
                        for (size_t ch = 0; ch < C; ch++)
                            o[ch] += v[ch];
                    }
            }
    }
    return VXM_OK;
}

/* The backward of concat (§2.7: "Concatenate: split"). */
vxm_status cpu_slice_channels(vxm_backend *be, const vxm_tensor *x, int c0, vxm_tensor *y)
{
    static const char op[] = "slice_channels";
    vxm_status st;
    if ((st = cpu_check_tensor(be, x, op, "input")) || (st = cpu_check_tensor(be, y, op, "output")) ||
        (st = cpu_check_same(be, x, y, 0, op, "input", "output")))
        return st;
    if (c0 < 0 || c0 + y->channels > x->channels)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: channels [%d, %d) of a %d-channel input", op, c0,
                         c0 + y->channels, x->channels);
    if (y->buf == x->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias the input", op);
    size_t cx = (size_t)x->channels, cy = (size_t)y->channels;
    size_t nvox = (size_t)x->shape[0] * (size_t)x->shape[1] * (size_t)x->shape[2];
    const float *src = x->buf->data + c0;
    float *dst = y->buf->data;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (nvox * cy >= CPU_PAR_MIN)
    for (size_t v = 0; v < nvox; v++)
        memcpy(dst + v * cy, src + v * cx, cy * sizeof(float));
    return VXM_OK;
}

/* Gradient accumulation where a tensor feeds several nodes. */
vxm_status cpu_add(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *y)
{
    static const char op[] = "add";
    vxm_status st;
    if ((st = cpu_check_tensor(be, a, op, "first input")) || (st = cpu_check_tensor(be, b, op, "second input")) ||
        (st = cpu_check_tensor(be, y, op, "output")))
        return st;
    size_t n = vxm_tensor_numel(a);
    if (vxm_tensor_numel(b) != n || vxm_tensor_numel(y) != n)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %zu, %zu and %zu elements", op, n,
                         vxm_tensor_numel(b), vxm_tensor_numel(y));
    const float *pa = a->buf->data, *pb = b->buf->data;
    float *out = y->buf->data;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = pa[i] + pb[i];
    return VXM_OK;
}

/* §2.7 SampleNormalLogVar, in the order TF's gradient graph evaluates it for z = mean + exp(logvar / 2) * eps:
 * Mul gives dy * eps, Exp's gradient multiplies by its output exp(logvar / 2), RealDiv by 2 divides by 2. */
vxm_status cpu_sample_normal_backward(vxm_backend *be, const vxm_tensor *logvar, const vxm_tensor *eps,
                                      const vxm_tensor *dy, vxm_tensor *dlogvar)
{
    static const char op[] = "sample_normal_backward";
    vxm_status st;
    if ((st = cpu_check_tensor(be, logvar, op, "log-variance")) || (st = cpu_check_tensor(be, eps, op, "noise")) ||
        (st = cpu_check_tensor(be, dy, op, "gradient")) || (st = cpu_check_tensor(be, dlogvar, op, "output")) ||
        (st = cpu_check_same(be, logvar, eps, 1, op, "log-variance", "noise")) ||
        (st = cpu_check_same(be, logvar, dy, 1, op, "log-variance", "gradient")) ||
        (st = cpu_check_same(be, logvar, dlogvar, 1, op, "log-variance", "output")))
        return st;
    size_t n = vxm_tensor_numel(logvar);
    const float *lv = logvar->buf->data, *e = eps->buf->data, *g = dy->buf->data;
    float *out = dlogvar->buf->data;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float sd = expf(lv[i] / 2.0f);
        float t = g[i] * e[i];
        t = t * sd;
        out[i] = t / 2.0f;
    }
    return VXM_OK;
}
