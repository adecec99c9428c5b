/* The CPU backend: constructor, ops table, host-memory buffers and the simple element-wise / data-movement ops
 * (spec §2.2-§2.5, §3.3 step 2).  The convolution, resize, integration and transformer live in their own files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend_cpu/cpu_conv.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_isa.h"

/* ---- shared helpers ------------------------------------------------------------------------------------ */

vxm_status cpu_nomem(vxm_backend *be, size_t bytes)
{
    return vxm_error(be->ctx, VXM_ENOMEM, "cpu", "cannot allocate %zu MB", (bytes + (1u << 20) - 1) >> 20);
}

/* Large tensors are 2 MiB-aligned and marked for transparent huge pages: a new 55 MB layer output otherwise takes
 * ~13 000 page faults on first touch (tens of ms per full-size layer, more than the work of a pooling or a concat),
 * with huge pages ~30.  Where the kernel does not offer them (THP "never") madvise fails and nothing changes. */
#define CPU_HUGE_MIN ((size_t)8 << 20)
#define CPU_HUGE_ALIGN ((size_t)2 << 20)

float *cpu_alloc_floats(size_t n)
{
    size_t bytes = n * sizeof(float);
    if (n > ((size_t)-1 - CPU_HUGE_ALIGN) / sizeof(float))
        return NULL;
    if (bytes >= CPU_HUGE_MIN) {
        bytes = (bytes + CPU_HUGE_ALIGN - 1) & ~(CPU_HUGE_ALIGN - 1);
        float *p = aligned_alloc(CPU_HUGE_ALIGN, bytes);
#ifdef MADV_HUGEPAGE
        if (p)
            madvise(p, bytes, MADV_HUGEPAGE);
#endif
        return p;
    }
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0)
        bytes = 64;
    return aligned_alloc(64, bytes);
}

vxm_status cpu_check_tensor(vxm_backend *be, const vxm_tensor *t, const char *op, const char *what)
{
    if (!t || !t->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: %s has no buffer", op, what);
    if (t->shape[0] < 1 || t->shape[1] < 1 || t->shape[2] < 1 || t->channels < 1)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %s has empty shape %dx%dx%dx%d", op, what, t->shape[0],
                         t->shape[1], t->shape[2], t->channels);
    if (t->buf->n < vxm_tensor_numel(t))
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %s %dx%dx%dx%d does not fit its buffer of %zu floats",
                         op, what, t->shape[0], t->shape[1], t->shape[2], t->channels, t->buf->n);
    return VXM_OK;
}

vxm_status cpu_check_same(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, int channels, const char *op,
                          const char *wa, const char *wb)
{
    if (a->shape[0] != b->shape[0] || a->shape[1] != b->shape[1] || a->shape[2] != b->shape[2] ||
        (channels && a->channels != b->channels))
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %s is %dx%dx%dx%d but %s is %dx%dx%dx%d", op, wa,
                         a->shape[0], a->shape[1], a->shape[2], a->channels, wb, b->shape[0], b->shape[1],
                         b->shape[2], b->channels);
    return VXM_OK;
}

/* ---- buffers --------------------------------------------------------------------------------------------- */

static vxm_status cpu_buffer_alloc(vxm_backend *be, size_t nfloats, vxm_buffer **out)
{
    *out = NULL;
    vxm_buffer *b = cpu_pool_take(be->impl, nfloats, be->mem_in_use, be->mem_peak);
    if (b) {
        vxm_backend_mem_add(be, b->n * sizeof(float));
        *out = b;
        return VXM_OK;
    }
    b = malloc(sizeof *b);
    if (!b)
        return cpu_nomem(be, sizeof *b);
    b->data = cpu_alloc_floats(nfloats);
    if (!b->data) {
        free(b);
        return cpu_nomem(be, nfloats * sizeof(float));
    }
    b->n = nfloats;
    b->view = 0;
    vxm_backend_mem_add(be, nfloats * sizeof(float));
    *out = b;
    return VXM_OK;
}

static vxm_status cpu_buffer_view(vxm_backend *be, vxm_buffer *parent, size_t offset, size_t nfloats,
                                  vxm_buffer **out)
{
    *out = NULL;
    if (!parent || offset > parent->n || nfloats > parent->n - offset || nfloats == 0)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "view of floats %zu..%zu of a buffer of %zu", offset,
                         offset + nfloats, parent ? parent->n : 0);
    vxm_buffer *b = malloc(sizeof *b);
    if (!b)
        return cpu_nomem(be, sizeof *b);
    b->data = parent->data + offset;
    b->n = nfloats;
    b->view = 1;
    *out = b;
    return VXM_OK;
}

static void cpu_pool_trim_op(vxm_backend *be)
{
    cpu_pool_trim(be->impl);
}

static void cpu_buffer_free(vxm_backend *be, vxm_buffer *buf)
{
    if (buf && buf->view) {
        free(buf);
        return;
    }
    if (buf) {
        vxm_backend_mem_sub(be, buf->n * sizeof(float));
        cpu_pool_give(be->impl, buf);
    }
}

static vxm_status cpu_buffer_write(vxm_backend *be, vxm_buffer *dst, const float *src, size_t nfloats)
{
    if (!dst || (!src && nfloats))
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "buffer_write: null buffer");
    if (nfloats > dst->n)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "buffer_write: %zu floats into a buffer of %zu", nfloats,
                         dst->n);
    if (nfloats)
        memcpy(dst->data, src, nfloats * sizeof(float));
    return VXM_OK;
}

static vxm_status cpu_buffer_read(vxm_backend *be, const vxm_buffer *src, float *dst, size_t nfloats)
{
    if (!src || (!dst && nfloats))
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "buffer_read: null buffer");
    if (nfloats > src->n)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "buffer_read: %zu floats from a buffer of %zu", nfloats,
                         src->n);
    if (nfloats)
        memcpy(dst, src->data, nfloats * sizeof(float));
    return VXM_OK;
}

static vxm_status cpu_finish(vxm_backend *be)
{
    (void)be; /* every op runs synchronously */
    return VXM_OK;
}

/* ---- element-wise ops (y may be x) ------------------------------------------------------------------------ */

static vxm_status cpu_leaky_relu(vxm_backend *be, const vxm_tensor *x, float alpha, vxm_tensor *y)
{
    vxm_status st;
    if ((st = cpu_check_tensor(be, x, "leaky_relu", "input")) ||
        (st = cpu_check_tensor(be, y, "leaky_relu", "output")) ||
        (st = cpu_check_same(be, x, y, 1, "leaky_relu", "input", "output")))
        return st;
    size_t n = vxm_tensor_numel(x);
    const float *in = x->buf->data;
    float *out = y->buf->data;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : alpha * in[i];
    return VXM_OK;
}

static vxm_status cpu_scale(vxm_backend *be, const vxm_tensor *x, float s, vxm_tensor *y)
{
    vxm_status st;
    if ((st = cpu_check_tensor(be, x, "scale", "input")) || (st = cpu_check_tensor(be, y, "scale", "output")) ||
        (st = cpu_check_same(be, x, y, 1, "scale", "input", "output")))
        return st;
    size_t n = vxm_tensor_numel(x);
    const float *in = x->buf->data;
    float *out = y->buf->data;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = s * in[i];
    return VXM_OK;
}

/* §3.3 step 2: mean + exp(logvar / 2) * eps, each operation rounded to float32 as TF does. */
static vxm_status cpu_sample_normal(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logvar,
                                    const vxm_tensor *eps, vxm_tensor *y)
{
    static const char op[] = "sample_normal";
    vxm_status st;
    if ((st = cpu_check_tensor(be, mean, op, "mean")) || (st = cpu_check_tensor(be, y, op, "output")) ||
        (st = cpu_check_same(be, mean, y, 1, op, "mean", "output")))
        return st;
    size_t n = vxm_tensor_numel(mean);
    const float *mu = mean->buf->data;
    float *out = y->buf->data;
    if (!eps) {
        if (out != mu)
            memcpy(out, mu, n * sizeof(float));
        return VXM_OK;
    }
    if ((st = cpu_check_tensor(be, logvar, op, "log-variance")) || (st = cpu_check_tensor(be, eps, op, "noise")) ||
        (st = cpu_check_same(be, mean, logvar, 1, op, "mean", "log-variance")) ||
        (st = cpu_check_same(be, mean, eps, 1, op, "mean", "noise")))
        return st;
    const float *lv = logvar->buf->data, *e = eps->buf->data;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float sd = expf(lv[i] / 2.0f);
        float z = sd * e[i];
        out[i] = mu[i] + z;
    }
    return VXM_OK;
}

/* ---- pooling, upsampling, concatenation ----------------------------------------------------------------- */

static vxm_status check_factors(vxm_backend *be, const int f[3], const char *op)
{
    if (!f || f[0] < 1 || f[1] < 1 || f[2] < 1)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: factors must be >= 1", op);
    return VXM_OK;
}

/* §2.3: 'valid' pooling with stride = pool size; max over the block in lexicographic order. */
static vxm_status cpu_maxpool(vxm_backend *be, const vxm_tensor *x, const int f[3], vxm_tensor *y)
{
    static const char op[] = "maxpool";
    vxm_status st;
    if ((st = check_factors(be, f, op)) || (st = cpu_check_tensor(be, x, op, "input")) ||
        (st = cpu_check_tensor(be, y, op, "output")))
        return st;
    for (int d = 0; d < 3; d++)
        if (y->shape[d] != x->shape[d] / f[d])
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output axis %d is %d, expected %d / %d = %d", op, d,
                             y->shape[d], x->shape[d], f[d], x->shape[d] / f[d]);
    if (y->channels != x->channels)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output has %d channels, input %d", op, y->channels,
                         x->channels);
    if (y->buf == x->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias the input", op);
    const float *in = x->buf->data;
    float *out = y->buf->data;
    const int *s = x->shape, *m = y->shape;
    int C = x->channels;
    long rows = (long)m[0] * m[1];
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (vxm_tensor_numel(y) >= CPU_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        int o0 = (int)(r / m[1]), o1 = (int)(r % m[1]);
        for (int o2 = 0; o2 < m[2]; o2++) {
            float *o = out + ((size_t)r * (size_t)m[2] + (size_t)o2) * (size_t)C;
            for (int a = 0; a < f[0]; a++)
                for (int b = 0; b < f[1]; b++)
                    for (int c = 0; c < f[2]; c++) {
                        const float *v = in + ((((size_t)o0 * f[0] + a) * (size_t)s[1] + (size_t)o1 * f[1] + b) *
                                                   (size_t)s[2] + (size_t)o2 * f[2] + c) * (size_t)C;
                        if (a == 0 && b == 0 && c == 0)
                            memcpy(o, v, (size_t)C * sizeof(float));
                        else
                            for (int ch = 0; ch < C; ch++)
                                o[ch] = v[ch] > o[ch] ? v[ch] : o[ch];
                    }
        }
    }
    return VXM_OK;
}

/* §2.4: y[i,j,k] = x[i/f0, j/f1, k/f2]. */
static vxm_status cpu_upsample_nearest(vxm_backend *be, const vxm_tensor *x, const int f[3], vxm_tensor *y)
{
    static const char op[] = "upsample_nearest";
    vxm_status st;
    if ((st = check_factors(be, f, op)) || (st = cpu_check_tensor(be, x, op, "input")) ||
        (st = cpu_check_tensor(be, y, op, "output")))
        return st;
    for (int d = 0; d < 3; d++)
        if (y->shape[d] != x->shape[d] * f[d])
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output axis %d is %d, expected %d * %d", op, d,
                             y->shape[d], x->shape[d], f[d]);
    if (y->channels != x->channels)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output has %d channels, input %d", op, y->channels,
                         x->channels);
    if (y->buf == x->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias the input", op);
    const float *in = x->buf->data;
    float *out = y->buf->data;
    const int *s = x->shape, *m = y->shape;
    size_t C = (size_t)x->channels;
    long rows = (long)m[0] * m[1];
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (vxm_tensor_numel(y) >= CPU_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        size_t i0 = (size_t)(r / m[1]) / (size_t)f[0], i1 = (size_t)(r % m[1]) / (size_t)f[1];
        const float *src = in + (i0 * (size_t)s[1] + i1) * (size_t)s[2] * C;
        float *dst = out + (size_t)r * (size_t)m[2] * C;
        for (int o2 = 0; o2 < m[2]; o2++)
            memcpy(dst + (size_t)o2 * C, src + (size_t)(o2 / f[2]) * C, C * sizeof(float));
    }
    return VXM_OK;
}

/* §2.5: channels of a, then channels of b. */
static vxm_status cpu_concat(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *y)
{
    static const char op[] = "concat";
    vxm_status st;
    if ((st = cpu_check_tensor(be, a, op, "first input")) || (st = cpu_check_tensor(be, b, op, "second input")) ||
        (st = cpu_check_tensor(be, y, op, "output")) ||
        (st = cpu_check_same(be, a, b, 0, op, "first input", "second input")) ||
        (st = cpu_check_same(be, a, y, 0, op, "first input", "output")))
        return st;
    if (y->channels != a->channels + b->channels)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output has %d channels, expected %d + %d", op,
                         y->channels, a->channels, b->channels);
    if (y->buf == a->buf || y->buf == b->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias an input", op);
    size_t ca = (size_t)a->channels, cb = (size_t)b->channels, cy = (size_t)y->channels;
    size_t nvox = (size_t)a->shape[0] * (size_t)a->shape[1] * (size_t)a->shape[2];
    const float *pa = a->buf->data, *pb = b->buf->data;
    float *py = y->buf->data;
    /* Two single-channel images (the U-Net's input, full size): an interleave the compiler vectorizes, instead of
     * two 4-byte memcpy calls per voxel (67 ms -> a few ms at 160x192x224 on one core). */
    if (ca == 1 && cb == 1) {
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (nvox * cy >= CPU_PAR_MIN)
        for (size_t v = 0; v < nvox; v++) {
            py[2 * v] = pa[v];
            py[2 * v + 1] = pb[v];
        }
        return VXM_OK;
    }
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (nvox * cy >= CPU_PAR_MIN)
    for (size_t v = 0; v < nvox; v++) {
        memcpy(py + v * cy, pa + v * ca, ca * sizeof(float));
        memcpy(py + v * cy + ca, pb + v * cb, cb * sizeof(float));
    }
    return VXM_OK;
}

/* ---- the backend ----------------------------------------------------------------------------------------- */

static void cpu_destroy(vxm_backend *be)
{
    cpu_pool_destroy(be->impl);
    free(be);
}

static const vxm_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .buffer_view = cpu_buffer_view,
    .pool_trim = cpu_pool_trim_op,
    .buffer_write = cpu_buffer_write,
    .buffer_read = cpu_buffer_read,
    .finish = cpu_finish,
    .conv = cpu_conv,
    .leaky_relu = cpu_leaky_relu,
    .maxpool = cpu_maxpool,
    .upsample_nearest = cpu_upsample_nearest,
    .concat = cpu_concat,
    .conv_pool = cpu_conv_pool,
    .conv_upcat = cpu_conv_upcat,
    .scale = cpu_scale,
    .resize_linear = cpu_resize_linear,
    .vecint = cpu_vecint,
    .spatial_transform = cpu_spatial_transform,
    .affine_to_disp = cpu_affine_to_disp,
    .sample_normal = cpu_sample_normal,
    .conv_backward_data = cpu_conv_backward_data,
    .conv_backward_filter = cpu_conv_backward_filter,
    .conv_backward_bias = cpu_conv_backward_bias,
    .leaky_relu_backward = cpu_leaky_relu_backward,
    .maxpool_backward = cpu_maxpool_backward,
    .upsample_nearest_backward = cpu_upsample_nearest_backward,
    .slice_channels = cpu_slice_channels,
    .add = cpu_add,
    .resize_linear_backward = cpu_resize_linear_backward,
    .sample_normal_backward = cpu_sample_normal_backward,
    .spatial_transform_backward = cpu_spatial_transform_backward,
    .mse_loss = cpu_mse_loss,
    .mse_loss_backward = cpu_mse_loss_backward,
    .ncc_loss = cpu_ncc_loss,
    .ncc_loss_backward = cpu_ncc_loss_backward,
    .grad_loss = cpu_grad_loss,
    .grad_loss_backward = cpu_grad_loss_backward,
    .dice_loss = cpu_dice_loss,
    .dice_loss_backward = cpu_dice_loss_backward,
    .kl_loss = cpu_kl_loss,
    .kl_loss_backward = cpu_kl_loss_backward,
    .adam_update = cpu_adam_update,
    .sgd_update = cpu_sgd_update,
    .axpy = cpu_axpy,
    .fill = cpu_fill,
    .rand_fill = cpu_rand_fill,
    .labels_to_intensity = cpu_labels_to_intensity,
    .conv_axis = cpu_conv_axis,
    .mul_exp = cpu_mul_exp,
    .minmax = cpu_minmax,
    .normalize_gamma = cpu_normalize_gamma,
    .argmax_channels = cpu_argmax_channels,
    .one_hot = cpu_one_hot,
    .elu = cpu_elu,
    .elu_backward = cpu_elu_backward,
    .blend = cpu_blend,
};

/* This file, like every backend_cpu file but cpu_isa.c, is compiled once per instruction-set variant (cpu_isa.h);
 * vxm_backend_cpu_create (cpu_isa.c) calls the variant's constructor. */
vxm_status CPU_ISA_NAME(cpu_backend_create)(vxm_context *ctx, vxm_backend **out)
{
    *out = NULL;
    vxm_backend *be = calloc(1, sizeof *be);
    if (!be)
        return vxm_error(ctx, VXM_ENOMEM, "cpu", "cannot allocate %zu MB", (size_t)1);
    be->ops = &cpu_ops;
    be->ctx = ctx;
    be->impl = cpu_pool_create(); /* NULL (out of memory) only disables the pool */
    be->is_gpu = 0;
    be->view_align = 16; /* a cache line: every view starts where a fresh aligned buffer would */
    snprintf(be->spec, sizeof be->spec, "cpu");
    int nt = vxm_context_effective_threads(ctx);
    snprintf(be->desc, sizeof be->desc, "cpu (%d thread%s, plain C + OpenMP, %s kernels)", nt, nt == 1 ? "" : "s",
             CPU_ISA_NAME_STR);
    *out = be;
    return VXM_OK;
}
