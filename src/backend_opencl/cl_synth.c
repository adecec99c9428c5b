/* Synthesis ops (SynthMorph's label-map-to-image model, training doc §6.3) and the element-wise ops declared with
 * them in backend.h (kernels in cl/synth.cl, CPU twin src/backend_cpu/cpu_synth.c; shared argument rules in
 * core/synth_args.h).  Every kernel of synth.cl takes its arguments in one order -- buffers, host tables, floats,
 * ints, ulongs -- so one launcher (synth_launch) sets them all.  The small host tables (means, stds, blank flags,
 * taps, LUT, exponents) go to read-only buffers created per call and released right after the launch (OpenCL keeps
 * them alive until the kernel has run).  Random streams: the key of core/counter_rng.h is computed here and passed to the
 * kernels, which repeat the per-element functions bit for bit. */
#include <math.h>
#include <stdlib.h>

#include "backend_opencl/cl_internal.h"
#include "core/counter_rng.h"
#include "core/synth_args.h"

/* The partials of minmax are read back from at most this many work-groups. */
#define MINMAX_MAX_GROUPS 1024

/* The arguments of one synth.cl kernel, in its order: the device buffers mem[], then read-only copies of the host
 * tables host[] (host_bytes[] each), then f[], i[], u[]. */
typedef struct synth_args {
    cl_mem mem[3];
    const void *host[3];
    size_t host_bytes[3];
    float f[3];
    int i[6];
    unsigned long long u[2];
    int nmem, nhost, nf, ni, nu;
} synth_args;

/* Copies the host tables, sets the arguments of `kid`, enqueues it over `items` work-items and releases the
 * copies (OpenCL keeps them until the kernel has run). */
static vxm_status synth_launch(vxm_backend *be, vxm_cl_kid kid, const synth_args *s, size_t items)
{
    cl_mem tab[3] = {NULL, NULL, NULL};
    vxm_status st = VXM_OK;
    for (int k = 0; k < s->nhost && !st; k++) {
        cl_int err;
        tab[k] = clCreateBuffer(vxm_cl_of(be)->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, s->host_bytes[k],
                                (void *)s->host[k], &err);
        if (!tab[k])
            st = vxm_cl_fail(be, err, 1, "clCreateBuffer(host table)");
    }
    if (!st) {
        vxm_cl_args a;
        vxm_cl_args_begin(&a, be, kid);
        for (int k = 0; k < s->nmem; k++)
            vxm_cl_arg_mem(&a, s->mem[k]);
        for (int k = 0; k < s->nhost; k++)
            vxm_cl_arg_mem(&a, tab[k]);
        for (int k = 0; k < s->nf; k++)
            vxm_cl_arg_float(&a, s->f[k]);
        for (int k = 0; k < s->ni; k++)
            vxm_cl_arg_int(&a, s->i[k]);
        for (int k = 0; k < s->nu; k++)
            vxm_cl_arg_ulong(&a, s->u[k]);
        if (!(st = vxm_cl_args_done(be, &a, kid)))
            st = vxm_cl_launch1(be, kid, items);
    }
    for (int k = 0; k < s->nhost; k++)
        if (tab[k])
            clReleaseMemObject(tab[k]);
    return st;
}

/* t valid, of ref's spatial shape (ref already checked), with `channels` channels (0: as many as ref). */
static vxm_status check_like(vxm_backend *be, const char *op, const vxm_tensor *ref, const vxm_tensor *t,
                             int channels)
{
    vxm_status st = vxm_cl_check_tensor(be, t, op);
    if (st)
        return st;
    if (ref->shape[0] != t->shape[0] || ref->shape[1] != t->shape[1] || ref->shape[2] != t->shape[2] ||
        t->channels != (channels ? channels : ref->channels))
        return vxm_cl_shape_error(be, op, ref, t);
    return VXM_OK;
}

/* x valid; the output y like x with cy channels (0: x's); the second input z (optional) like x with cz channels. */
static vxm_status check_io(vxm_backend *be, const char *op, const vxm_tensor *x, const vxm_tensor *y, int cy,
                           const vxm_tensor *z, int cz)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, op)) || (st = check_like(be, op, x, y, cy)) ||
        (z && (st = check_like(be, op, x, z, cz))))
        return st;
    return VXM_OK;
}

vxm_status vxm_cl_rand_fill(vxm_backend *be, vxm_buffer *p, size_t n, unsigned long long seed,
                            unsigned long long stream, int dist, float a, float b)
{
    vxm_status st;
    if ((st = vxm_synth_check_dist(be, dist)))
        return st;
    if (!p || !p->mem || p->nfloats < n)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "rand_fill: %zu floats in a buffer of %zu", n,
                         p ? p->nfloats : 0);
    /* uniform: a + (b - a) u clamped to nextafter(b, a), as cpu_rand_fill; normal: a + b N */
    synth_args s = {.mem = {p->mem}, .f = {a, b, b > a ? nextafterf(b, a) : b}, .u = {vxm_counter_key(seed, stream), n},
                    .nmem = 1, .nf = dist == 0 ? 3 : 2, .nu = 2};
    return synth_launch(be, dist == 0 ? VXM_K_RAND_UNIFORM : VXM_K_RAND_NORMAL, &s, n);
}

vxm_status vxm_cl_labels_to_intensity(vxm_backend *be, const vxm_tensor *lab, int nlab, const float *mean,
                                      const float *std, const int *blank, unsigned long long seed,
                                      unsigned long long stream, vxm_tensor *y)
{
    static const char op[] = "labels_to_intensity";
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, y, op)) || (st = check_like(be, op, y, lab, 1)) ||
        (st = vxm_synth_check_tables(be, op, nlab, mean, std, blank)))
        return st;
    size_t ntab = (size_t)y->channels * (size_t)nlab * sizeof(float), nvox = vxm_cl_nvox(y);
    synth_args s = {.mem = {lab->buf->mem, y->buf->mem},
                    .host = {mean, std, blank},
                    .host_bytes = {ntab, ntab, (size_t)y->channels * sizeof(int)},
                    .i = {nlab, y->channels},
                    .u = {vxm_counter_key(seed, stream), nvox},
                    .nmem = 2, .nhost = 3, .ni = 2, .nu = 2};
    return synth_launch(be, VXM_K_LABELS_TO_INTENSITY, &s, nvox);
}

vxm_status vxm_cl_conv_axis(vxm_backend *be, const vxm_tensor *x, int axis, const float *taps, int ntaps,
                            vxm_tensor *y)
{
    static const char op[] = "conv_axis";
    vxm_status st;
    if ((st = check_io(be, op, x, y, 0, NULL, 0)) || (st = vxm_synth_check_conv_axis(be, x, axis, taps, ntaps, y)))
        return st;
    size_t n = vxm_tensor_numel(x);
    synth_args s = {.mem = {x->buf->mem, y->buf->mem},
                    .host = {taps},
                    .host_bytes = {(size_t)ntaps * sizeof(float)},
                    .i = {ntaps, x->shape[1], x->shape[2], x->channels, axis, x->shape[axis]},
                    .u = {n},
                    .nmem = 2, .nhost = 1, .ni = 6, .nu = 1};
    return synth_launch(be, VXM_K_CONV_AXIS, &s, n);
}

vxm_status vxm_cl_mul_exp(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *f, vxm_tensor *y)
{
    vxm_status st = check_io(be, "mul_exp", x, y, 0, f, 1);
    if (st)
        return st;
    size_t n = vxm_tensor_numel(x);
    synth_args s = {.mem = {x->buf->mem, f->buf->mem, y->buf->mem}, .i = {x->channels}, .u = {n},
                    .nmem = 3, .ni = 1, .nu = 1};
    return synth_launch(be, VXM_K_MUL_EXP, &s, n);
}

/* Two passes: per-work-group partials on the device (cl/synth.cl), their min / max here. */
vxm_status vxm_cl_minmax(vxm_backend *be, const vxm_tensor *x, float out[2])
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, "minmax")))
        return st;
    vxm_cl *cl = vxm_cl_of(be);
    if ((st = vxm_cl_kernel_ready(be, VXM_K_MINMAX_PARTIAL))) /* its local size sizes the partials */
        return st;
    size_t n = vxm_tensor_numel(x), lws = cl->lws[VXM_K_MINMAX_PARTIAL];
    if (lws > 256)
        return vxm_error(be->ctx, VXM_EDEVICE, be->spec, "minmax: local size %zu above 256", lws);
    size_t groups = (n + lws - 1) / lws;
    if (groups > MINMAX_MAX_GROUPS)
        groups = MINMAX_MAX_GROUPS;
    float *part = malloc(2 * groups * sizeof(float));
    if (!part)
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "minmax: out of host memory");
    cl_int err;
    cl_mem dpart = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, 2 * groups * sizeof(float), NULL, &err);
    if (!dpart) {
        free(part);
        return vxm_cl_fail(be, err, 1, "clCreateBuffer(minmax partials)");
    }
    synth_args s = {.mem = {x->buf->mem, dpart}, .u = {n}, .nmem = 2, .nu = 1};
    st = synth_launch(be, VXM_K_MINMAX_PARTIAL, &s, groups * lws);
    if (!st) {
        err = clEnqueueReadBuffer(cl->queue, dpart, CL_TRUE, 0, 2 * groups * sizeof(float), part, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            st = vxm_cl_fail(be, err, 0, "clEnqueueReadBuffer(minmax partials)");
    }
    if (!st)
        vxm_synth_minmax_fold(part, part + 1, groups, 2, out);
    clReleaseMemObject(dpart);
    free(part);
    return st;
}

vxm_status vxm_cl_normalize_gamma(vxm_backend *be, const vxm_tensor *x, float lo, float hi, const float *expo,
                                  vxm_tensor *y)
{
    static const char op[] = "normalize_gamma";
    vxm_status st;
    if ((st = check_io(be, op, x, y, 0, NULL, 0)) ||
        (st = vxm_synth_check_tables(be, op, x->channels, expo, expo, expo)))
        return st;
    size_t n = vxm_tensor_numel(x);
    synth_args s = {.mem = {x->buf->mem, y->buf->mem},
                    .host = {expo},
                    .host_bytes = {(size_t)x->channels * sizeof(float)},
                    .f = {lo, hi},
                    .i = {x->channels},
                    .u = {n},
                    .nmem = 2, .nhost = 1, .nf = 2, .ni = 1, .nu = 1};
    return synth_launch(be, VXM_K_NORMALIZE_GAMMA, &s, n);
}

vxm_status vxm_cl_argmax_channels(vxm_backend *be, const vxm_tensor *x, vxm_tensor *y)
{
    vxm_status st;
    if ((st = check_io(be, "argmax_channels", x, y, 1, NULL, 0)))
        return st;
    size_t nvox = vxm_cl_nvox(x);
    synth_args s = {.mem = {x->buf->mem, y->buf->mem}, .i = {x->channels}, .u = {nvox}, .nmem = 2, .ni = 1, .nu = 1};
    return synth_launch(be, VXM_K_ARGMAX_CHANNELS, &s, nvox);
}

vxm_status vxm_cl_one_hot(vxm_backend *be, const vxm_tensor *lab, const int *lut, int nlut, vxm_tensor *y)
{
    static const char op[] = "one_hot";
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, y, op)) || (st = check_like(be, op, y, lab, 1)) ||
        (st = vxm_synth_check_tables(be, op, nlut, lut, lut, lut)))
        return st;
    size_t n = vxm_tensor_numel(y);
    synth_args s = {.mem = {lab->buf->mem, y->buf->mem},
                    .host = {lut},
                    .host_bytes = {(size_t)nlut * sizeof(int)},
                    .i = {nlut, y->channels},
                    .u = {n},
                    .nmem = 2, .nhost = 1, .ni = 2, .nu = 1};
    return synth_launch(be, VXM_K_ONE_HOT, &s, n);
}

vxm_status vxm_cl_elu(vxm_backend *be, const vxm_tensor *x, vxm_tensor *y)
{
    vxm_status st;
    if ((st = check_io(be, "elu", x, y, 0, NULL, 0)))
        return st;
    size_t n = vxm_tensor_numel(x);
    synth_args s = {.mem = {x->buf->mem, y->buf->mem}, .u = {n}, .nmem = 2, .nu = 1};
    return synth_launch(be, VXM_K_ELU, &s, n);
}

vxm_status vxm_cl_elu_backward(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, vxm_tensor *dx)
{
    vxm_status st = check_io(be, "elu_backward", x, dx, 0, dy, 0);
    if (st)
        return st;
    size_t n = vxm_tensor_numel(x);
    synth_args s = {.mem = {x->buf->mem, dy->buf->mem, dx->buf->mem}, .u = {n}, .nmem = 3, .nu = 1};
    return synth_launch(be, VXM_K_ELU_BACKWARD, &s, n);
}

vxm_status vxm_cl_blend(vxm_backend *be, float alpha, const vxm_tensor *x, float beta, const vxm_tensor *z,
                        vxm_tensor *y)
{
    static const char op[] = "blend";
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, op)) || (st = vxm_cl_check_tensor(be, z, op)) ||
        (st = vxm_cl_check_tensor(be, y, op)))
        return st;
    size_t n = vxm_tensor_numel(x);
    if (vxm_tensor_numel(z) != n || vxm_tensor_numel(y) != n)
        return vxm_cl_shape_error(be, op, vxm_tensor_numel(z) != n ? z : y, x);
    synth_args s = {.mem = {x->buf->mem, z->buf->mem, y->buf->mem}, .f = {alpha, beta}, .u = {n},
                    .nmem = 3, .nf = 2, .nu = 1};
    return synth_launch(be, VXM_K_BLEND, &s, n);
}
