/* Losses of training doc §2 (kernels in cl/loss.cl, reductions in cl/01_reduce.cl).
 *
 * A loss value is a deterministic sum: a kernel writes per-element terms (vxm_acc: double with cl_khr_fp64, else a
 * compensated float pair) into scratch A, interleaved when a loss needs several sums (Dice: 2 per label; Grad / KL:
 * one per axis); levels of fixed RED_CHUNK-element chunk sums (scratch B, C alternately) reduce them to one sum per
 * quantity -- the partition depends only on the element count, never on the device or work-group size -- and
 * vxm_loss_final forms the scalar.  Backward ops are one elementwise kernel each (Dice first reduces its two sums per
 * label); NCC runs separable window sums (see ncc_window_sums). */
#include "backend_opencl/cl_internal.h"

#define RED_CHUNK 256u
#define ACC_FLOATS 2 /* a vxm_acc is 8 bytes (double or float2) */

/* vxm_loss_final kinds (the enum in cl/loss.cl) */
enum { LOSS_MEAN = 0, LOSS_NEG_MEAN = 1, LOSS_GRAD = 2, LOSS_KL = 3, LOSS_DICE = 4 };

static size_t nvox_of(const vxm_tensor *t)
{
    return (size_t)t->shape[0] * (size_t)t->shape[1] * (size_t)t->shape[2];
}

static vxm_status shape_error(vxm_backend *be, const char *op, const vxm_tensor *a, const vxm_tensor *b)
{
    return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: shapes %dx%dx%dx%d and %dx%dx%dx%d do not fit", op,
                     a->shape[0], a->shape[1], a->shape[2], a->channels, b->shape[0], b->shape[1], b->shape[2],
                     b->channels);
}

/* Both tensors valid with identical shapes and channels (and fewer than 2^32 elements: kernels index terms in uint). */
static vxm_status check_pair(vxm_backend *be, const char *op, const vxm_tensor *a, const vxm_tensor *b)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, a, op)) || (st = vxm_cl_check_tensor(be, b, op)))
        return st;
    if (a->shape[0] != b->shape[0] || a->shape[1] != b->shape[1] || a->shape[2] != b->shape[2] ||
        a->channels != b->channels)
        return shape_error(be, op, a, b);
    if (vxm_tensor_numel(a) >= 0xffffffffu)
        return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "%s: more than 2^32 elements", op);
    return VXM_OK;
}

static vxm_status check_out(vxm_backend *be, const char *op, const vxm_tensor *out)
{
    vxm_status st = vxm_cl_check_tensor(be, out, op);
    if (!st && vxm_tensor_numel(out) < 1)
        st = vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: no room for the loss value", op);
    return st;
}

static vxm_status go(vxm_backend *be, vxm_cl_args *a, vxm_cl_kid kid, size_t n)
{
    vxm_status st = vxm_cl_args_done(be, a, kid);
    return st ? st : vxm_cl_launch1(be, kid, n);
}

/* Scratch A sized for n elements of nq accumulators. */
static vxm_status terms_buffer(vxm_backend *be, size_t n, unsigned nq, cl_mem *out)
{
    return vxm_cl_scratch(be, VXM_SCRATCH_TRAIN_A, n * nq * ACC_FLOATS, out);
}

/* Reduces n elements of nq interleaved accumulators in `terms` to nq sums, left at the start of *sums. */
static vxm_status reduce_terms(vxm_backend *be, cl_mem terms, size_t n, unsigned nq, cl_mem *sums)
{
    cl_mem in = terms;
    int slot = VXM_SCRATCH_TRAIN_B;
    while (n > 1) {
        size_t nout = (n + RED_CHUNK - 1) / RED_CHUNK;
        cl_mem out;
        vxm_status st = vxm_cl_scratch(be, slot, nout * nq * ACC_FLOATS, &out);
        if (st)
            return st;
        vxm_cl_args a;
        vxm_cl_args_begin(&a, be, VXM_K_REDUCE_ACC);
        vxm_cl_arg_mem(&a, in);
        vxm_cl_arg_mem(&a, out);
        vxm_cl_arg_uint(&a, (unsigned)n);
        vxm_cl_arg_uint(&a, nq);
        vxm_cl_arg_uint(&a, RED_CHUNK);
        vxm_cl_arg_uint(&a, (unsigned)nout);
        if ((st = vxm_cl_args_done(be, &a, VXM_K_REDUCE_ACC)) ||
            (st = vxm_cl_launch2(be, VXM_K_REDUCE_ACC, nout, nq)))
            return st;
        in = out;
        n = nout;
        slot = slot == VXM_SCRATCH_TRAIN_B ? VXM_SCRATCH_TRAIN_C : VXM_SCRATCH_TRAIN_B;
    }
    *sums = in;
    return VXM_OK;
}

/* Reduce, then out[0] = the loss of `kind` from the nq sums; cnt[q] = element count of sum q's mean. */
static vxm_status finish_loss(vxm_backend *be, cl_mem terms, size_t n, unsigned nq, int kind, const double *cnt,
                              float lambda, vxm_tensor *out)
{
    cl_mem sums;
    vxm_status st = reduce_terms(be, terms, n, nq, &sums);
    if (st)
        return st;
    cl_float4 c;
    for (int q = 0; q < 4; q++)
        c.s[q] = cnt && q < (int)nq ? (float)cnt[q] : 1.0f;
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_LOSS_FINAL);
    vxm_cl_arg_mem(&a, sums);
    vxm_cl_arg_mem(&a, out->buf->mem);
    vxm_cl_arg_int(&a, kind);
    vxm_cl_arg_int(&a, (int)nq);
    vxm_cl_arg_raw(&a, sizeof c, &c);
    vxm_cl_arg_float(&a, lambda);
    return go(be, &a, VXM_K_LOSS_FINAL, 1);
}

/* ---- MSE (§2.2) ------------------------------------------------------------------------------------------- */

vxm_status vxm_cl_mse_loss(vxm_backend *be, const vxm_tensor *a_, const vxm_tensor *b_, vxm_tensor *out)
{
    vxm_status st;
    cl_mem terms;
    size_t n = vxm_tensor_numel(a_);
    if ((st = check_pair(be, "mse_loss", a_, b_)) || (st = check_out(be, "mse_loss", out)) ||
        (st = terms_buffer(be, n, 1, &terms)))
        return st;
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_MSE_TERMS);
    vxm_cl_arg_mem(&a, a_->buf->mem);
    vxm_cl_arg_mem(&a, b_->buf->mem);
    vxm_cl_arg_mem(&a, terms);
    vxm_cl_arg_ulong(&a, n);
    double cnt = (double)n;
    if ((st = go(be, &a, VXM_K_MSE_TERMS, n)))
        return st;
    return finish_loss(be, terms, n, 1, LOSS_MEAN, &cnt, 0.0f, out);
}

vxm_status vxm_cl_mse_loss_backward(vxm_backend *be, const vxm_tensor *a_, const vxm_tensor *b_, float scale,
                                    vxm_tensor *da)
{
    vxm_status st;
    if ((st = check_pair(be, "mse_loss_backward", a_, b_)) || (st = check_pair(be, "mse_loss_backward", a_, da)))
        return st;
    size_t n = vxm_tensor_numel(a_);
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_MSE_BWD);
    vxm_cl_arg_mem(&a, a_->buf->mem);
    vxm_cl_arg_mem(&a, b_->buf->mem);
    vxm_cl_arg_mem(&a, da->buf->mem);
    vxm_cl_arg_float(&a, (float)((double)scale / (double)n));
    vxm_cl_arg_ulong(&a, n);
    return go(be, &a, VXM_K_MSE_BWD, n);
}

/* ---- forward differences: Grad (§2.4) and KL's precision term (§2.5) --------------------------------------- */

static vxm_status check_ndim(vxm_backend *be, const char *op, int ndim, int need_channels, const vxm_tensor *t)
{
    if (ndim < 1 || ndim > 3)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: ndim %d not in 1..3", op, ndim);
    if (need_channels && t->channels != ndim)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %d channels for ndim %d", op, t->channels, ndim);
    return VXM_OK;
}

/* Number of forward differences along axis 3-ndim+d: numel / n * (n - 1). */
static void diff_counts(const vxm_tensor *t, int ndim, double *cnt)
{
    double numel = (double)vxm_tensor_numel(t);
    for (int d = 0; d < ndim; d++) {
        int n = t->shape[3 - ndim + d];
        cnt[d] = numel / n * (n - 1);
    }
}

static vxm_status diff_terms(vxm_backend *be, const vxm_tensor *y, int ndim, int l1, cl_mem terms, unsigned nq,
                             unsigned q0)
{
    size_t n = vxm_tensor_numel(y);
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_DIFF_TERMS);
    vxm_cl_arg_mem(&a, y->buf->mem);
    vxm_cl_arg_mem(&a, terms);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, y->shape[d]);
    vxm_cl_arg_int(&a, y->channels);
    vxm_cl_arg_int(&a, ndim);
    vxm_cl_arg_int(&a, l1 != 0);
    vxm_cl_arg_uint(&a, nq);
    vxm_cl_arg_uint(&a, q0);
    vxm_cl_arg_ulong(&a, n);
    return go(be, &a, VXM_K_DIFF_TERMS, n);
}

/* dy = sum_d k_d (P'(before) - P'(after)) with k_d = w / cnt_d (0 on axes without differences). */
static vxm_status diff_backward(vxm_backend *be, const vxm_tensor *y, int ndim, int l1, double w, vxm_tensor *dy)
{
    double cnt[3];
    diff_counts(y, ndim, cnt);
    cl_float4 k = {{0.0f, 0.0f, 0.0f, 0.0f}};
    for (int d = 0; d < ndim; d++)
        k.s[d] = cnt[d] > 0 ? (float)(w / cnt[d]) : 0.0f;
    size_t n = vxm_tensor_numel(y);
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_DIFF_BWD);
    vxm_cl_arg_mem(&a, y->buf->mem);
    vxm_cl_arg_mem(&a, dy->buf->mem);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, y->shape[d]);
    vxm_cl_arg_int(&a, y->channels);
    vxm_cl_arg_int(&a, ndim);
    vxm_cl_arg_int(&a, l1 != 0);
    vxm_cl_arg_raw(&a, sizeof k, &k);
    vxm_cl_arg_ulong(&a, n);
    return go(be, &a, VXM_K_DIFF_BWD, n);
}

vxm_status vxm_cl_grad_loss(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, vxm_tensor *out)
{
    vxm_status st;
    cl_mem terms;
    size_t n = vxm_tensor_numel(flow);
    if ((st = check_pair(be, "grad_loss", flow, flow)) || (st = check_out(be, "grad_loss", out)) ||
        (st = check_ndim(be, "grad_loss", ndim, 0, flow)) || (st = terms_buffer(be, n, (unsigned)ndim, &terms)) ||
        (st = diff_terms(be, flow, ndim, l1, terms, (unsigned)ndim, 0)))
        return st;
    double cnt[3];
    diff_counts(flow, ndim, cnt);
    return finish_loss(be, terms, n, (unsigned)ndim, LOSS_GRAD, cnt, 0.0f, out);
}

vxm_status vxm_cl_grad_loss_backward(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, float scale,
                                     vxm_tensor *dflow)
{
    vxm_status st;
    if ((st = check_pair(be, "grad_loss_backward", flow, dflow)) ||
        (st = check_ndim(be, "grad_loss_backward", ndim, 0, flow)))
        return st;
    if (flow->buf == dflow->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "grad_loss_backward: dflow aliases flow");
    /* loss = (sum_d mean_d) / ndim */
    return diff_backward(be, flow, ndim, l1, (double)scale / ndim, dflow);
}

/* ---- Dice (§2.3) -------------------------------------------------------------------------------------------- */

/* Sums per label: [yt yp for each label, yt + yp for each label]. */
static vxm_status dice_sums(vxm_backend *be, const char *op, const vxm_tensor *yt, const vxm_tensor *yp,
                            cl_mem *terms)
{
    vxm_status st;
    size_t nvox = nvox_of(yt);
    unsigned nq = 2u * (unsigned)yt->channels;
    if ((st = check_pair(be, op, yt, yp)) || (st = terms_buffer(be, nvox, nq, terms)))
        return st;
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_DICE_TERMS);
    vxm_cl_arg_mem(&a, yt->buf->mem);
    vxm_cl_arg_mem(&a, yp->buf->mem);
    vxm_cl_arg_mem(&a, *terms);
    vxm_cl_arg_int(&a, yt->channels);
    vxm_cl_arg_uint(&a, (unsigned)nvox);
    if ((st = vxm_cl_args_done(be, &a, VXM_K_DICE_TERMS)))
        return st;
    return vxm_cl_launch2(be, VXM_K_DICE_TERMS, nvox, (size_t)yt->channels);
}

vxm_status vxm_cl_dice_loss(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, vxm_tensor *out)
{
    vxm_status st;
    cl_mem terms;
    if ((st = check_out(be, "dice_loss", out)) || (st = dice_sums(be, "dice_loss", ytrue, ypred, &terms)))
        return st;
    return finish_loss(be, terms, nvox_of(ytrue), 2u * (unsigned)ytrue->channels, LOSS_DICE, NULL, 0.0f, out);
}

vxm_status vxm_cl_dice_loss_backward(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, float scale,
                                     vxm_tensor *dpred)
{
    vxm_status st;
    cl_mem terms, sums;
    if ((st = check_pair(be, "dice_loss_backward", ypred, dpred)) ||
        (st = dice_sums(be, "dice_loss_backward", ytrue, ypred, &terms)) ||
        (st = reduce_terms(be, terms, nvox_of(ytrue), 2u * (unsigned)ytrue->channels, &sums)))
        return st;
    if (dpred->buf == ytrue->buf || dpred->buf == ypred->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "dice_loss_backward: dpred aliases an input");
    size_t n = vxm_tensor_numel(ytrue);
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_DICE_BWD);
    vxm_cl_arg_mem(&a, ytrue->buf->mem);
    vxm_cl_arg_mem(&a, sums);
    vxm_cl_arg_mem(&a, dpred->buf->mem);
    vxm_cl_arg_int(&a, ytrue->channels);
    vxm_cl_arg_float(&a, (float)(-(double)scale / ytrue->channels));
    vxm_cl_arg_ulong(&a, n);
    return go(be, &a, VXM_K_DICE_BWD, n);
}

/* ---- KL (§2.5) ---------------------------------------------------------------------------------------------- */

/* The sigma-term kernels share their arguments: s, out, shape, nd, lambda. */
static void kl_args(vxm_cl_args *a, vxm_backend *be, vxm_cl_kid kid, const vxm_tensor *s, cl_mem out, float lambda)
{
    vxm_cl_args_begin(a, be, kid);
    vxm_cl_arg_mem(a, s->buf->mem);
    vxm_cl_arg_mem(a, out);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, s->shape[d]);
    vxm_cl_arg_int(a, s->channels);
    vxm_cl_arg_float(a, lambda);
}

vxm_status vxm_cl_kl_loss(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim,
                          float prior_lambda, vxm_tensor *out)
{
    vxm_status st;
    cl_mem terms;
    size_t n = vxm_tensor_numel(mean);
    unsigned nq = (unsigned)ndim + 1;
    if ((st = check_pair(be, "kl_loss", mean, logsigma)) || (st = check_out(be, "kl_loss", out)) ||
        (st = check_ndim(be, "kl_loss", ndim, 1, mean)) || (st = terms_buffer(be, n, nq, &terms)))
        return st;
    vxm_cl_args a;
    kl_args(&a, be, VXM_K_KL_SIGMA_TERMS, logsigma, terms, prior_lambda);
    vxm_cl_arg_uint(&a, nq);
    vxm_cl_arg_ulong(&a, n);
    if ((st = go(be, &a, VXM_K_KL_SIGMA_TERMS, n)) || (st = diff_terms(be, mean, ndim, 0, terms, nq, 1)))
        return st;
    double cnt[4] = {(double)n};
    diff_counts(mean, ndim, cnt + 1);
    return finish_loss(be, terms, n, nq, LOSS_KL, cnt, prior_lambda, out);
}

vxm_status vxm_cl_kl_loss_backward(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim,
                                   float prior_lambda, float scale, vxm_tensor *dmean, vxm_tensor *dlogsigma)
{
    vxm_status st;
    if ((st = check_pair(be, "kl_loss_backward", mean, logsigma)) ||
        (st = check_ndim(be, "kl_loss_backward", ndim, 1, mean)) ||
        (dmean && (st = check_pair(be, "kl_loss_backward", mean, dmean))) ||
        (dlogsigma && (st = check_pair(be, "kl_loss_backward", mean, dlogsigma))))
        return st;
    const vxm_tensor *ins[2] = {mean, logsigma};
    for (int i = 0; i < 2; i++)
        if ((dmean && dmean->buf == ins[i]->buf) || (dlogsigma && dlogsigma->buf == ins[i]->buf))
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "kl_loss_backward: an output aliases an input");
    /* KL = 0.5 nd (sigma_term + lambda 0.5 (sum_d mean_d) / nd): d KL / d mean_d = 0.25 lambda */
    if (dmean && (st = diff_backward(be, mean, ndim, 0, 0.25 * (double)prior_lambda * scale, dmean)))
        return st;
    if (!dlogsigma)
        return VXM_OK;
    size_t n = vxm_tensor_numel(logsigma);
    vxm_cl_args a;
    kl_args(&a, be, VXM_K_KL_SIGMA_BWD, logsigma, dlogsigma->buf->mem, prior_lambda);
    vxm_cl_arg_float(&a, (float)(0.5 * ndim * (double)scale / (double)n));
    vxm_cl_arg_ulong(&a, n);
    return go(be, &a, VXM_K_KL_SIGMA_BWD, n);
}

/* ---- NCC (§2.1) ----------------------------------------------------------------------------------------------
 * Window sums (I, J, I^2, J^2, IJ over the window and all channels, zero padding) as separable box passes, 5 vxm_acc
 * per voxel in scratch A and B (the accurate sums TF's gradients need, ../data/train/README.md).  TF SAME, stride 1:
 * window offsets -pad_lo .. -pad_lo + w - 1, pad_lo = (w - 1) / 2; the adjoint (backward) window is the mirror,
 * pad_lo - w + 1 .. pad_lo. */

typedef struct ncc_geom {
    int w[3], lo[3], adj[3]; /* window, forward and adjoint first offsets per axis */
    float W;                 /* prod(win) * C, TF's win_size */
    size_t nvox;
} ncc_geom;

static vxm_status ncc_setup(vxm_backend *be, const char *op, const vxm_tensor *I, const vxm_tensor *J,
                            const int win[3], ncc_geom *g, cl_mem *A, cl_mem *B)
{
    vxm_status st = check_pair(be, op, I, J);
    if (st)
        return st;
    if (!win)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: no window", op);
    double W = I->channels;
    for (int d = 0; d < 3; d++) {
        if (win[d] < 1)
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: window %d on axis %d", op, win[d], d);
        int pad = (win[d] - 1) / 2;
        g->w[d] = win[d];
        g->lo[d] = -pad;
        g->adj[d] = pad - win[d] + 1;
        W *= win[d];
    }
    g->W = (float)W;
    g->nvox = nvox_of(I);
    if ((st = vxm_cl_scratch(be, VXM_SCRATCH_TRAIN_A, g->nvox * 5 * ACC_FLOATS, A)) ||
        (st = vxm_cl_scratch(be, VXM_SCRATCH_TRAIN_B, g->nvox * 5 * ACC_FLOATS, B)))
        return st;
    return VXM_OK;
}

/* One box pass of the five maps along axis 1 or 2 (in -> out). */
static vxm_status ncc_box(vxm_backend *be, const vxm_tensor *I, const ncc_geom *g, cl_mem in, cl_mem out, int axis,
                          int lo)
{
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_NCC_BOX);
    vxm_cl_arg_mem(&a, in);
    vxm_cl_arg_mem(&a, out);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, I->shape[d]);
    vxm_cl_arg_int(&a, axis);
    vxm_cl_arg_int(&a, lo);
    vxm_cl_arg_int(&a, g->w[axis]);
    vxm_cl_arg_uint(&a, (unsigned)g->nvox);
    return go(be, &a, VXM_K_NCC_BOX, g->nvox);
}

/* Axis 2 (with the channel sum) into A, axis 1 into B; axis 0 is fused into the next kernel. */
static vxm_status ncc_window_sums(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const ncc_geom *g,
                                  cl_mem A, cl_mem B)
{
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_NCC_SUM_FIRST);
    vxm_cl_arg_mem(&a, I->buf->mem);
    vxm_cl_arg_mem(&a, J->buf->mem);
    vxm_cl_arg_mem(&a, A);
    vxm_cl_arg_int(&a, I->shape[1]);
    vxm_cl_arg_int(&a, I->shape[2]);
    vxm_cl_arg_int(&a, I->channels);
    vxm_cl_arg_int(&a, g->lo[2]);
    vxm_cl_arg_int(&a, g->w[2]);
    vxm_cl_arg_uint(&a, (unsigned)g->nvox);
    vxm_status st = go(be, &a, VXM_K_NCC_SUM_FIRST, g->nvox);
    return st ? st : ncc_box(be, I, g, A, B, 1, g->lo[1]);
}

/* Arguments common to the fused axis-0 kernels: in, out, shape, lo, w. */
static void ncc_last_args(vxm_cl_args *a, vxm_backend *be, vxm_cl_kid kid, const vxm_tensor *I, const ncc_geom *g,
                          cl_mem in, cl_mem out, int lo)
{
    vxm_cl_args_begin(a, be, kid);
    vxm_cl_arg_mem(a, in);
    vxm_cl_arg_mem(a, out);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, I->shape[d]);
    vxm_cl_arg_int(a, lo);
    vxm_cl_arg_int(a, g->w[0]);
}

vxm_status vxm_cl_ncc_loss(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3], float eps,
                           vxm_tensor *out)
{
    ncc_geom g;
    cl_mem A, B;
    vxm_status st;
    if ((st = check_out(be, "ncc_loss", out)) || (st = ncc_setup(be, "ncc_loss", I, J, win, &g, &A, &B)) ||
        (st = ncc_window_sums(be, I, J, &g, A, B)))
        return st;
    vxm_cl_args a; /* cc per voxel into A (free again), then -mean */
    ncc_last_args(&a, be, VXM_K_NCC_CC, I, &g, B, A, g.lo[0]);
    vxm_cl_arg_float(&a, g.W);
    vxm_cl_arg_float(&a, eps);
    vxm_cl_arg_uint(&a, (unsigned)g.nvox);
    if ((st = go(be, &a, VXM_K_NCC_CC, g.nvox)))
        return st;
    double cnt = (double)g.nvox;
    return finish_loss(be, A, g.nvox, 1, LOSS_NEG_MEAN, &cnt, 0.0f, out);
}

vxm_status vxm_cl_ncc_loss_backward(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3],
                                    float eps, float scale, vxm_tensor *dI, vxm_tensor *dJ)
{
    const char *op = "ncc_loss_backward";
    ncc_geom g;
    cl_mem A, B;
    vxm_status st;
    if ((dI && (st = check_pair(be, op, I, dI))) || (dJ && (st = check_pair(be, op, I, dJ))))
        return st;
    if ((dI && (dI->buf == I->buf || dI->buf == J->buf)) || (dJ && (dJ->buf == I->buf || dJ->buf == J->buf)))
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: an output aliases an input", op);
    if (!dI && !dJ)
        return VXM_OK;
    if ((st = ncc_setup(be, op, I, J, win, &g, &A, &B)) || (st = ncc_window_sums(be, I, J, &g, A, B)))
        return st;
    /* d(scale * -mean cc)/d cc = -scale / nvox per voxel; the five derivative maps into A */
    vxm_cl_args a;
    ncc_last_args(&a, be, VXM_K_NCC_DERIV, I, &g, B, A, g.lo[0]);
    vxm_cl_arg_float(&a, g.W);
    vxm_cl_arg_float(&a, eps);
    vxm_cl_arg_float(&a, (float)(-(double)scale / (double)g.nvox));
    vxm_cl_arg_uint(&a, (unsigned)g.nvox);
    if ((st = go(be, &a, VXM_K_NCC_DERIV, g.nvox)) || (st = ncc_box(be, I, &g, A, B, 2, g.adj[2])) ||
        (st = ncc_box(be, I, &g, B, A, 1, g.adj[1])))
        return st;
    cl_mem dummy = I->buf->mem; /* never written: want_* is 0 */
    vxm_cl_args_begin(&a, be, VXM_K_NCC_GRAD);
    vxm_cl_arg_mem(&a, A);
    vxm_cl_arg_mem(&a, I->buf->mem);
    vxm_cl_arg_mem(&a, J->buf->mem);
    vxm_cl_arg_mem(&a, dI ? dI->buf->mem : dummy);
    vxm_cl_arg_mem(&a, dJ ? dJ->buf->mem : dummy);
    vxm_cl_arg_int(&a, dI != NULL);
    vxm_cl_arg_int(&a, dJ != NULL);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, I->shape[d]);
    vxm_cl_arg_int(&a, I->channels);
    vxm_cl_arg_int(&a, g.adj[0]);
    vxm_cl_arg_int(&a, g.w[0]);
    vxm_cl_arg_uint(&a, (unsigned)g.nvox);
    return go(be, &a, VXM_K_NCC_GRAD, g.nvox);
}
