/* Internal: the device abstraction.  Each backend (CPU, OpenCL) fills one vxm_backend_ops table, in the
 * manner of ggml-backend / SQLite's VFS; the graph executor calls only through this table and never knows
 * which backend runs.
 *
 * Tensor layout: channels-last, C order, one batch element: (n0, n1, n2, C), element (i,j,k,c) at
 * ((i*n1 + j)*n2 + k)*C + c.  This is Keras' layout, so .h5 kernels (k0,k1,k2,Cin,Cout) are used as stored,
 * the spatial transformer reads all channels of a voxel from one contiguous run, and a convolution is a
 * sum over taps of small (Cin x Cout) matrix products whose Cout axis is contiguous -- the shape fast SIMD
 * and GPU kernels want.
 *
 * 2-D data is stored as 3-D with n0 = 1; every op takes per-axis parameters (kernel 1x3x3, pool 1x2x2, ...).
 * Displacement fields carry `ndim` channels; channel c is the displacement along spatial axis
 * (3 - ndim + c), i.e. for 2-D channel 0 -> axis 1, channel 1 -> axis 2 ('ij' order of the 2-D image). */
#ifndef VXM_BACKEND_H
#define VXM_BACKEND_H

#include <stddef.h>

#include "core/context.h"
#include "vxm.h"

typedef struct vxm_buffer vxm_buffer; /* defined by each backend */

typedef struct vxm_tensor {
    int shape[3]; /* spatial; 2-D: shape[0] == 1 */
    int channels;
    vxm_buffer *buf; /* owned by the backend that allocated it */
} vxm_tensor;

static inline size_t vxm_tensor_numel(const vxm_tensor *t)
{
    return (size_t)t->shape[0] * (size_t)t->shape[1] * (size_t)t->shape[2] * (size_t)t->channels;
}

typedef enum vxm_interp { VXM_INTERP_LINEAR = 0, VXM_INTERP_NEAREST = 1 } vxm_interp;

/* Coordinate mapping of the linear resize (spec §6): current neurite align-corners linspace, or the legacy
 * neuron mapping s(i) = i / factor. */
typedef enum vxm_resize_mapping { VXM_RESIZE_LINSPACE = 0, VXM_RESIZE_LEGACY = 1 } vxm_resize_mapping;

typedef struct vxm_conv_params {
    int ksize[3];  /* kernel extent per axis (2-D: {1, k, k}) */
    int stride[3]; /* 1 or 2 per axis (2-D: {1, s, s}) */
    int pad_lo[3]; /* TF SAME padding before, spec §2.1 (vxm_same_padding) */
    int leaky;     /* nonzero: apply LeakyReLU(alpha) to the result (fused) */
    float alpha;
} vxm_conv_params;

/* TF 'SAME': output m = ceil(n/s), P = max((m-1)s + k - n, 0), pad before = floor(P/2) (spec §2.1). */
static inline void vxm_same_padding(int n, int k, int s, int *m, int *pad_lo)
{
    int out = (n + s - 1) / s;
    int p = (out - 1) * s + k - n;
    if (p < 0)
        p = 0;
    *m = out;
    *pad_lo = p / 2;
}

typedef struct vxm_backend_ops {
    const char *name; /* "cpu" or "opencl" */
    void (*destroy)(vxm_backend *be);

    /* Buffers hold float32.  Sizes in floats. */
    vxm_status (*buffer_alloc)(vxm_backend *be, size_t nfloats, vxm_buffer **out);
    void (*buffer_free)(vxm_backend *be, vxm_buffer *buf);
    /* A buffer aliasing floats [offset, offset + nfloats) of `parent` (the executor's memory plan, graph/plan.c);
     * offset a multiple of be->view_align.  Freeing the view leaves the parent's storage alone; the parent must
     * outlive its views.  Views do not count in mem_in_use (their parent does). */
    vxm_status (*buffer_view)(vxm_backend *be, vxm_buffer *parent, size_t offset, size_t nfloats, vxm_buffer **out);
    /* Releases every freed buffer the backend keeps for reuse (its pool): the memory plan's arena replaces them. */
    void (*pool_trim)(vxm_backend *be);
    vxm_status (*buffer_write)(vxm_backend *be, vxm_buffer *dst, const float *src, size_t nfloats);
    vxm_status (*buffer_read)(vxm_backend *be, const vxm_buffer *src, float *dst, size_t nfloats);
    vxm_status (*finish)(vxm_backend *be); /* wait for all queued work */

    /* y = SAME-padded cross-correlation of x with w (layout (k0,k1,k2,Cin,Cout)) + b (Cout), optional fused
     * LeakyReLU.  y->shape must be ceil(x->shape/stride), y->channels = Cout. */
    vxm_status (*conv)(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                       const vxm_conv_params *p, vxm_tensor *y);
    /* y = x > 0 ? x : alpha*x.  y may be x. */
    vxm_status (*leaky_relu)(vxm_backend *be, const vxm_tensor *x, float alpha, vxm_tensor *y);
    /* Max over blocks f[0] x f[1] x f[2], 'valid': y->shape = floor(x->shape / f). */
    vxm_status (*maxpool)(vxm_backend *be, const vxm_tensor *x, const int f[3], vxm_tensor *y);
    /* Nearest upsampling by integer factors: y[i,j,k] = x[i/f0, j/f1, k/f2]. */
    vxm_status (*upsample_nearest)(vxm_backend *be, const vxm_tensor *x, const int f[3], vxm_tensor *y);
    /* Channel concatenation [a, b] (same spatial shape). */
    vxm_status (*concat)(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *y);
    /* Fused ops (inference graphs, graph/fuse.h): the same results as the op sequences they replace -- bitwise on
     * the CPU backend, except conv_upcat where it folds the upsampling into the weights (Cout a multiple of 16:
     * fewer FLOPs, float rounding of the unfused result; cpu_conv_fused.c) -- without storing the intermediate
     * full-resolution tensors.
     * conv_pool: y = maxpool_f(conv(x) + bias [LeakyReLU]) ('valid' pooling of the conv's ceil(x / stride) grid:
     * y->shape = floor(that / f), y->channels = Cout).  Same w, b, p as conv. */
    vxm_status (*conv_pool)(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                            const vxm_conv_params *p, const int f[3], vxm_tensor *y);
    /* conv_upcat: y = conv(concat(upsample_nearest_f(a), skip)) -- the upsampled channels first, then skip's, as the
     * U-Net decoder concatenates them (model/vxm_dense_graph.c build_unet) -- with a->shape * f == skip->shape and
     * w of (k0,k1,k2, Ca + Cskip, Cout); y->shape = ceil(skip->shape / stride).  y must alias neither input. */
    vxm_status (*conv_upcat)(vxm_backend *be, const vxm_tensor *a, const int f[3], const vxm_tensor *skip,
                             const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, vxm_tensor *y);
    /* y = s * x.  y may be x. */
    vxm_status (*scale)(vxm_backend *be, const vxm_tensor *x, float s, vxm_tensor *y);
    /* Linear resize of every channel to y->shape with clamped trilinear interpolation (spec §6.1 / §6.2).
     * `factor` is used by the legacy mapping only (s(i) = i / factor[d]); linspace uses the sizes. */
    vxm_status (*resize_linear)(vxm_backend *be, const vxm_tensor *x, vxm_resize_mapping map,
                                const float factor[3], vxm_tensor *y);
    /* Scaling and squaring (spec §5): w = v / 2^steps; steps times w = w + interp(w, x + w).  v has ndim
     * channels.  y must not alias v.  steps == 0 copies v. */
    vxm_status (*vecint)(vxm_backend *be, const vxm_tensor *v, int ndim, int steps, vxm_tensor *y);
    /* y(x) = interp(img, x + disp(x)) (spec §4.1-4.4): output shape = disp shape, channels = img channels.
     * Linear: clamp coordinate then trilinear; nearest: round half to even then clamp.  With use_fill, any
     * voxel whose unclamped location leaves [0, n-1] on some axis gets `fill`. */
    vxm_status (*spatial_transform)(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, int ndim,
                                    vxm_interp interp, int use_fill, float fill, vxm_tensor *y);
    /* Dense displacement p - x of an affine matrix (spec §4.5, current convention: full transform).
     * `mat`: ndim rows of ndim+1 floats, row-major, in the ndim image axes.  shift_center: p = A(x-c)+t+c with
     * c = (n-1)/2, else p = A x + t.  y has ndim channels; its shape gives the grid. */
    vxm_status (*affine_to_disp)(vxm_backend *be, const float *mat, int ndim, int shift_center, vxm_tensor *y);
    /* y = mean + exp(logvar / 2) * eps (spec §3.3 step 2); eps == NULL means y = mean (deterministic). */
    vxm_status (*sample_normal)(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logvar,
                                const vxm_tensor *eps, vxm_tensor *y);

    /* ---- training: backward ops (ggml's *_back, llm.c's *_backward).  Every gradient op OVERWRITES its output
     * (accumulation where a tensor feeds several nodes is an explicit `add`).  Reductions (filter/bias gradients,
     * losses) are deterministic: partial sums over a fixed partition of the data (independent of thread count /
     * work-group count) added in a fixed order; no float atomics.  Rules: training doc §2.7. */

    /* dx = gradient of conv w.r.t. its input x (dx->shape = x's shape, dx->channels = Cin) from dy (the gradient
     * of the PRE-activation output: a fused LeakyReLU is undone first with leaky_relu_backward).  Same p as the
     * forward; stride 1 or 2; TF SAME padding. */
    vxm_status (*conv_backward_data)(vxm_backend *be, const vxm_tensor *dy, const vxm_buffer *w,
                                     const vxm_conv_params *p, vxm_tensor *dx);
    /* dw (k0*k1*k2*Cin*Cout floats, layout (k0,k1,k2,Cin,Cout)) = sum over output voxels of x-patch (x) dy. */
    vxm_status (*conv_backward_filter)(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy,
                                       const vxm_conv_params *p, vxm_buffer *dw);
    /* db (dy->channels floats) = sum of dy over voxels. */
    vxm_status (*conv_backward_bias)(vxm_backend *be, const vxm_tensor *dy, vxm_buffer *db);
    /* dx = dy * (ref > 0 ? 1 : alpha).  `ref` is the op's input or its output (same sign for alpha > 0); x == 0
     * takes alpha (TF).  dx may be dy. */
    vxm_status (*leaky_relu_backward)(vxm_backend *be, const vxm_tensor *ref, const vxm_tensor *dy, float alpha,
                                      vxm_tensor *dx);
    /* dx (x's shape) from dy (pooled shape).  tie_tol >= 0: every input of a block with |x - max| < tie_tol receives
     * the block's whole gradient (TF CPU MaxPool3D, tie_tol = 1e-5); tie_tol < 0: only the first maximum in
     * row-major block order (MaxPool2D).  Inputs outside every complete block get 0. */
    vxm_status (*maxpool_backward)(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, const int f[3],
                                   float tie_tol, vxm_tensor *dx);
    /* dx[i] = sum of dy over the f0*f1*f2 children of i (dx->shape = dy->shape / f). */
    vxm_status (*upsample_nearest_backward)(vxm_backend *be, const vxm_tensor *dy, const int f[3], vxm_tensor *dx);
    /* y = channels [c0, c0 + y->channels) of x (the backward of concat). */
    vxm_status (*slice_channels)(vxm_backend *be, const vxm_tensor *x, int c0, vxm_tensor *y);
    /* y = a + b, element-wise over numel (shapes may differ if numel agrees).  y may alias a or b. */
    vxm_status (*add)(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *y);
    /* Adjoint of resize_linear with the same mapping: dx (input shape) from dy (output shape). */
    vxm_status (*resize_linear_backward)(vxm_backend *be, const vxm_tensor *dy, vxm_resize_mapping map,
                                         const float factor[3], vxm_tensor *dx);
    /* Backward of the LINEAR spatial transform y = interp(img, x + disp) (training doc §2.7: float32 locations,
     * clamp passes gradient for 0 <= p <= n-1 inclusive, floor/corners constant).  dimg (img's shape; NULL: not
     * wanted) = scatter of dy with the trilinear weights, deterministic; ddisp (disp's shape; NULL: not wanted) =
     * sum over channels of dy * d(interp)/dp.  With use_fill, voxels that take the fill value pass no gradient. */
    vxm_status (*spatial_transform_backward)(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp,
                                             const vxm_tensor *dy, int ndim, int use_fill, vxm_tensor *dimg,
                                             vxm_tensor *ddisp);
    /* dlogvar = dy * 0.5 * exp(logvar / 2) * eps (d mean = dy needs no op). */
    vxm_status (*sample_normal_backward)(vxm_backend *be, const vxm_tensor *logvar, const vxm_tensor *eps,
                                         const vxm_tensor *dy, vxm_tensor *dlogvar);

    /* ---- training: losses (training doc §2; spec §7).  Forward ops write ONE float into `out` (a 1x1x1x1
     * tensor): the per-sample loss before its Keras weight.  Backward ops write scale * d(loss)/d(input) (scale =
     * loss weight / batch size), overwriting. */

    /* out = mean over all elements of (a - b)^2 (the 1/sigma^2 factor is applied by the caller through scale). */
    vxm_status (*mse_loss)(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *out);
    /* da = scale * 2 (a - b) / numel  (db = -da: the caller scales by -1 if it needs it). */
    vxm_status (*mse_loss_backward)(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, float scale,
                                    vxm_tensor *da);
    /* NCC of training doc §2.1 in TF's exact formula: I = y_true, J = y_pred, window win[d] (1 on unused axes of
     * 2-D data), eps 1e-5, window sums over the window AND all channels, zero padding; out = -mean(cc). */
    vxm_status (*ncc_loss)(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3], float eps,
                           vxm_tensor *out);
    /* dI, dJ (either may be NULL) = scale * d(-mean cc)/dI, dJ with tf.maximum's rule (x >= eps passes). */
    vxm_status (*ncc_loss_backward)(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3],
                                    float eps, float scale, vxm_tensor *dI, vxm_tensor *dJ);
    /* Grad (training doc §2.4) of a field with `ndim` spatial axes (the last ndim axes of shape): forward
     * differences d along each axis, l1 -> |d|, else d*d; out = (sum over axes of mean(d-term)) / ndim.
     * (loss_mult is folded into scale / applied by the caller.) */
    vxm_status (*grad_loss)(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, vxm_tensor *out);
    vxm_status (*grad_loss_backward)(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, float scale,
                                     vxm_tensor *dflow);
    /* Soft Dice (training doc §2.3): out = -mean over labels (channels) of divide_no_nan(2 sum yt*yp, sum yt+yp). */
    vxm_status (*dice_loss)(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, vxm_tensor *out);
    vxm_status (*dice_loss_backward)(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, float scale,
                                     vxm_tensor *dpred);
    /* KL (training doc §2.5) of mean and log-sigma fields (ndim channels each), prior lambda, degree map D of
     * in-bounds face neighbours over the last ndim axes:
     * out = 0.5 ndim (mean(lambda D exp(s) - s) + lambda 0.5 sum_d mean((Delta_d mean)^2) / ndim). */
    vxm_status (*kl_loss)(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim,
                          float prior_lambda, vxm_tensor *out);
    /* dmean, dlogsigma (either may be NULL) = scale * gradients of the KL above. */
    vxm_status (*kl_loss_backward)(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim,
                                   float prior_lambda, float scale, vxm_tensor *dmean, vxm_tensor *dlogsigma);

    /* ---- training: optimisers and buffer arithmetic (n floats, flat) ---------------------------------------- */
    /* Keras Adam (training doc §3.2): m += (g-m)(1-b1); v += (g^2-v)(1-b2); p -= lr_t * m / (sqrt(v) + eps), with
     * lr_t = lr sqrt(1-b2^t)/(1-b1^t) computed by the caller in double and passed as float. */
    vxm_status (*adam_update)(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, vxm_buffer *m,
                              vxm_buffer *v, size_t n, float lr_t, float beta1, float beta2, float eps);
    /* p -= lr * g */
    vxm_status (*sgd_update)(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, size_t n, float lr);
    /* y += a * x */
    vxm_status (*axpy)(vxm_backend *be, float a, const vxm_buffer *x, vxm_buffer *y, size_t n);
    /* p[0..n) = value */
    vxm_status (*fill)(vxm_backend *be, vxm_buffer *p, size_t n, float value);

    /* ---- synthesis (SynthMorph's label-map-to-image model, training doc §6.3) and other element-wise ops.
     * Random numbers are counter-based: element i of the stream (seed, stream) is a pure function of (seed,
     * stream, i) (vxm_counter_bits / vxm_counter_uniform / vxm_counter_normal in core/counter_rng.h, copied bit
     * for bit by cl/synth.cl), so every backend draws the same numbers regardless of threads or work-groups. */

    /* p[i] = uniform in [a, b) (dist 0) or a + b * N(0, 1) (dist 1) from element i of stream (seed, stream). */
    vxm_status (*rand_fill)(vxm_backend *be, vxm_buffer *p, size_t n, unsigned long long seed,
                            unsigned long long stream, int dist, float a, float b);
    /* Per-label Gaussian intensities (§6.3 step 5-6): lab holds label indices 0..nlab-1 as floats (one channel);
     * y (lab's shape, C channels) = mean[c*nlab + l] + std[c*nlab + l] * N_v, N_v element v of the normal stream
     * (seed, stream) -- the same noise for every channel, as neurite draws it; blank[c] != 0 sets the voxels of
     * label index 0 to 0 in channel c.  mean, std: C*nlab host floats; blank: C host ints. */
    vxm_status (*labels_to_intensity)(vxm_backend *be, const vxm_tensor *lab, int nlab, const float *mean,
                                      const float *std, const int *blank, unsigned long long seed,
                                      unsigned long long stream, vxm_tensor *y);
    /* 1-D cross-correlation along spatial axis `axis` (0..2) with ntaps (odd) host taps centred on the voxel, zero
     * padding (TF SAME), every channel: y[.., i, ..] = sum_t taps[t] x[.., i + t - ntaps/2, ..].  y must not
     * alias x. */
    vxm_status (*conv_axis)(vxm_backend *be, const vxm_tensor *x, int axis, const float *taps, int ntaps,
                            vxm_tensor *y);
    /* y[v, c] = x[v, c] * exp(f[v]) (f has one channel and x's spatial shape: a multiplicative bias field).  y may
     * be x. */
    vxm_status (*mul_exp)(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *f, vxm_tensor *y);
    /* out[0] = min, out[1] = max over all elements of x (host floats). */
    vxm_status (*minmax)(vxm_backend *be, const vxm_tensor *x, float out[2]);
    /* §6.3 step 9 after the min/max: y = ((clamp(x, 0, 255) - lo) / (hi - lo)) ^ expo[c] per channel c, with y = 0
     * where hi == lo (div_no_nan).  expo: C host floats.  y may be x. */
    vxm_status (*normalize_gamma)(vxm_backend *be, const vxm_tensor *x, float lo, float hi, const float *expo,
                                  vxm_tensor *y);
    /* y[v] = index of the largest channel of x[v] as a float (the first on ties); y has one channel. */
    vxm_status (*argmax_channels)(vxm_backend *be, const vxm_tensor *x, vxm_tensor *y);
    /* One-hot through a look-up table: l = (int)lab[v] (0 <= l < nlut), y[v, c] = (lut[l] == c) for c < y->channels;
     * lut entries -1 give all-zero rows.  lut: nlut host ints. */
    vxm_status (*one_hot)(vxm_backend *be, const vxm_tensor *lab, const int *lut, int nlut, vxm_tensor *y);
    /* ELU (conditional templates, training doc §4.2): y = x > 0 ? x : exp(x) - 1; y may be x.  Backward from the
     * op's input x: dx = dy * (x > 0 ? 1 : exp(x)); dx may be dy. */
    vxm_status (*elu)(vxm_backend *be, const vxm_tensor *x, vxm_tensor *y);
    vxm_status (*elu_backward)(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, vxm_tensor *dx);
    /* y = a * x + b * z element-wise over numel (a linear blend: MeanStream's update, template atlases).  y may
     * alias x or z. */
    vxm_status (*blend)(vxm_backend *be, float a, const vxm_tensor *x, float b, const vxm_tensor *z, vxm_tensor *y);
} vxm_backend_ops;

struct vxm_backend {
    const vxm_backend_ops *ops;
    vxm_context *ctx; /* errors go here */
    void *impl;       /* backend-private state */
    char desc[256];   /* human-readable device description */
    char spec[32];    /* "cpu", "opencl:P:D" */
    int is_gpu;
    /* Largest single buffer in bytes (OpenCL: CL_DEVICE_MAX_MEM_ALLOC_SIZE), 0 = no limit (CPU).  Inference graphs
     * split wider tensors into channel groups (graph/split.h); VXM_MAX_ALLOC_MB lowers it for tests. */
    unsigned long long max_alloc;
    size_t view_align; /* buffer_view offsets are multiples of this many floats (OpenCL: CL_DEVICE_MEM_BASE_ADDR_ALIGN) */
    /* The weights of the last model registered on this device, uploaded once (graph/executor.c): reused by every
     * later registration with the same model (register --batch), freed with the backend. */
    struct vxm_weights *weights_cache;
    unsigned long long weights_cache_model; /* the model's serial (vxm_model.serial), 0 = none */
    const vxm_context *weights_cache_ctx;   /* and the context that numbered it */
    /* Bytes of this backend's buffers in use -- allocated by buffer_alloc and not yet freed, plus OpenCL's scratch
     * buffers -- and the most in use since the backend opened or vxm_backend_memory_reset: what a graph needs of
     * the device, without what the buffer pools keep for reuse (issue 10's training memory; bench/train_bench). */
    size_t mem_in_use, mem_peak;
};

/* Accounting of mem_in_use / mem_peak by the backends' buffer allocators. */
static inline void vxm_backend_mem_add(vxm_backend *be, size_t bytes)
{
    be->mem_in_use += bytes;
    if (be->mem_in_use > be->mem_peak)
        be->mem_peak = be->mem_in_use;
}
static inline void vxm_backend_mem_sub(vxm_backend *be, size_t bytes)
{
    be->mem_in_use -= bytes < be->mem_in_use ? bytes : be->mem_in_use;
}
/* The peak restarts from what is in use now (e.g. after set-up, to measure one training step). */
static inline void vxm_backend_memory_reset(vxm_backend *be)
{
    be->mem_peak = be->mem_in_use;
}

/* Constructors (each backend's own file). */
vxm_status vxm_backend_cpu_create(vxm_context *ctx, vxm_backend **out);
vxm_status vxm_backend_opencl_create(vxm_context *ctx, int platform, int device, vxm_backend **out);

/* OpenCL enumeration.  Fills up to `max` entries; returns the number of devices found (0 when there is no
 * OpenCL platform at all, which is not an error). */
typedef struct vxm_opencl_device_info {
    int platform, device;
    int is_gpu;
    char platform_name[128];
    char device_name[128];
    unsigned long long global_mem, max_alloc;
} vxm_opencl_device_info;
int vxm_opencl_enumerate(vxm_context *ctx, vxm_opencl_device_info *out, int max);

/* Tile tuning of an OpenCL backend's tiled convolution kernels (backend_opencl/cl_tune.c, issue 10), as CLBlast's
 * tuner: every candidate tile of each kernel and output-channel class is timed on a representative layer of the
 * published model (scaled down by `quick`), checked bitwise against the direct kernel, and the fastest stored in the
 * device's tuned file, which later runs read.  Each result line (a table row) goes to report(user, line).
 * VXM_EUNSUPPORTED for a non-OpenCL backend. */
typedef struct vxm_tune_options {
    int quick;           /* fewer candidates, smaller layers (a minute on a CPU device) */
    int reps;            /* timed runs per candidate (the minimum counts); 0 = 3 */
    int dry_run;         /* time and report, but do not write the tuned file */
    int max_candidates;  /* at most this many candidate tiles per kernel and class (0 = all; tests) */
} vxm_tune_options;
vxm_status vxm_opencl_tune(vxm_backend *be, const vxm_tune_options *o, void (*report)(void *user, const char *line),
                           void *user, char *path, size_t pathlen);

/* One line saying which convolution kernels an OpenCL backend runs ("tiles: conv 128x32x16x8x4 ... (tuned)"). */
void vxm_opencl_tile_summary(vxm_backend *be, char *buf, size_t n);

/* Tensor helpers over the ops table (src/core/tensor.c). */
vxm_status vxm_tensor_alloc(vxm_backend *be, const int shape[3], int channels, vxm_tensor *t);
void vxm_tensor_release(vxm_backend *be, vxm_tensor *t);
vxm_status vxm_tensor_upload(vxm_backend *be, vxm_tensor *t, const float *host);
vxm_status vxm_tensor_download(vxm_backend *be, const vxm_tensor *t, float *host);

#endif
