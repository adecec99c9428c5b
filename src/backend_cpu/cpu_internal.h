/* Internal to the CPU backend: the buffer type, shape checks shared by the op files, and the op entry points
 * that cpu_backend.c puts into the ops table.
 *
 * Threading rule for every op: OpenMP with num_threads(cpu_threads(be)) and each output element computed
 * entirely by one thread, in an order that does not depend on the thread count (no parallel reductions), so
 * results are bitwise identical for any number of threads. */
#ifndef VXM_BACKEND_CPU_INTERNAL_H
#define VXM_BACKEND_CPU_INTERNAL_H

#include <stddef.h>

#include "backend.h"

/* A CPU buffer is host memory, 64-byte aligned. */
struct vxm_buffer {
    float *data;
    size_t n;  /* floats */
    int view;  /* aliases another buffer's storage (buffer_view): freeing it frees only this struct */
};

static inline int cpu_threads(const vxm_backend *be)
{
    return vxm_context_effective_threads(be->ctx);
}

/* The backend's pool of freed large buffers (cpu_pool.c), held in be->impl. */
typedef struct cpu_pool cpu_pool;
cpu_pool *cpu_pool_create(void);
void cpu_pool_destroy(cpu_pool *p);
/* A pooled buffer holding at least nfloats (wasting at most 1/16 of it), or NULL: then the oldest pooled buffers are
 * released until pooled + in_use + the request fit in max(peak, in_use + request) (be->mem_in_use, be->mem_peak). */
vxm_buffer *cpu_pool_take(cpu_pool *p, size_t nfloats, size_t in_use, size_t peak);
/* Keeps b for reuse (or frees it: small, over the cap). */
void cpu_pool_give(cpu_pool *p, vxm_buffer *b);
/* Releases every pooled buffer. */
void cpu_pool_trim(cpu_pool *p);

/* Work below this many output floats runs on one thread (thread start-up would dominate). */
#define CPU_PAR_MIN 32768

/* VXM_OK if t has a buffer holding at least numel(t) floats and positive sizes; else VXM_ESHAPE/EINVAL. */
vxm_status cpu_check_tensor(vxm_backend *be, const vxm_tensor *t, const char *op, const char *what);
/* VXM_OK if a and b have the same spatial shape (and, with `channels`, the same channel count). */
vxm_status cpu_check_same(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, int channels, const char *op,
                          const char *wa, const char *wb);
vxm_status cpu_nomem(vxm_backend *be, size_t bytes);
/* 64-byte aligned allocation of n floats (never NULL for n == 0 unless out of memory). */
float *cpu_alloc_floats(size_t n);

vxm_status cpu_conv(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                    const vxm_conv_params *p, vxm_tensor *y);
vxm_status cpu_resize_linear(vxm_backend *be, const vxm_tensor *x, vxm_resize_mapping map, const float factor[3],
                             vxm_tensor *y);
vxm_status cpu_vecint(vxm_backend *be, const vxm_tensor *v, int ndim, int steps, vxm_tensor *y);
vxm_status cpu_spatial_transform(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, int ndim,
                                 vxm_interp interp, int use_fill, float fill, vxm_tensor *y);
vxm_status cpu_affine_to_disp(vxm_backend *be, const float *mat, int ndim, int shift_center, vxm_tensor *y);


/* Training ops (backend.h documents each). */
vxm_status cpu_conv_backward_data(vxm_backend *be, const vxm_tensor *dy, const vxm_buffer *w, const vxm_conv_params *p, vxm_tensor *dx);
vxm_status cpu_conv_backward_filter(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, const vxm_conv_params *p, vxm_buffer *dw);
vxm_status cpu_conv_backward_bias(vxm_backend *be, const vxm_tensor *dy, vxm_buffer *db);
vxm_status cpu_leaky_relu_backward(vxm_backend *be, const vxm_tensor *ref, const vxm_tensor *dy, float alpha, vxm_tensor *dx);
vxm_status cpu_maxpool_backward(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, const int f[3], float tie_tol, vxm_tensor *dx);
vxm_status cpu_upsample_nearest_backward(vxm_backend *be, const vxm_tensor *dy, const int f[3], vxm_tensor *dx);
vxm_status cpu_slice_channels(vxm_backend *be, const vxm_tensor *x, int c0, vxm_tensor *y);
vxm_status cpu_add(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *y);
vxm_status cpu_resize_linear_backward(vxm_backend *be, const vxm_tensor *dy, vxm_resize_mapping map, const float factor[3], vxm_tensor *dx);
vxm_status cpu_sample_normal_backward(vxm_backend *be, const vxm_tensor *logvar, const vxm_tensor *eps, const vxm_tensor *dy, vxm_tensor *dlogvar);
vxm_status cpu_spatial_transform_backward(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, const vxm_tensor *dy, int ndim, int use_fill, vxm_tensor *dimg, vxm_tensor *ddisp);
vxm_status cpu_mse_loss(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *out);
vxm_status cpu_mse_loss_backward(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, float scale, vxm_tensor *da);
vxm_status cpu_ncc_loss(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3], float eps, vxm_tensor *out);
vxm_status cpu_ncc_loss_backward(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3], float eps, float scale, vxm_tensor *dI, vxm_tensor *dJ);
vxm_status cpu_grad_loss(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, vxm_tensor *out);
vxm_status cpu_grad_loss_backward(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, float scale, vxm_tensor *dflow);
vxm_status cpu_dice_loss(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, vxm_tensor *out);
vxm_status cpu_dice_loss_backward(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, float scale, vxm_tensor *dpred);
vxm_status cpu_kl_loss(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim, float prior_lambda, vxm_tensor *out);
vxm_status cpu_kl_loss_backward(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim, float prior_lambda, float scale, vxm_tensor *dmean, vxm_tensor *dlogsigma);
vxm_status cpu_adam_update(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, vxm_buffer *m, vxm_buffer *v, size_t n, float lr_t, float beta1, float beta2, float eps);
vxm_status cpu_sgd_update(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, size_t n, float lr);
vxm_status cpu_axpy(vxm_backend *be, float a, const vxm_buffer *x, vxm_buffer *y, size_t n);
vxm_status cpu_fill(vxm_backend *be, vxm_buffer *p, size_t n, float value);

/* Synthesis and other element-wise ops (cpu_synth.c; backend.h documents each). */
vxm_status cpu_rand_fill(vxm_backend *be, vxm_buffer *p, size_t n, unsigned long long seed, unsigned long long stream, int dist, float a, float b);
vxm_status cpu_labels_to_intensity(vxm_backend *be, const vxm_tensor *lab, int nlab, const float *mean, const float *std, const int *blank, unsigned long long seed, unsigned long long stream, vxm_tensor *y);
vxm_status cpu_conv_axis(vxm_backend *be, const vxm_tensor *x, int axis, const float *taps, int ntaps, vxm_tensor *y);
vxm_status cpu_mul_exp(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *f, vxm_tensor *y);
vxm_status cpu_minmax(vxm_backend *be, const vxm_tensor *x, float out[2]);
vxm_status cpu_normalize_gamma(vxm_backend *be, const vxm_tensor *x, float lo, float hi, const float *expo, vxm_tensor *y);
vxm_status cpu_argmax_channels(vxm_backend *be, const vxm_tensor *x, vxm_tensor *y);
vxm_status cpu_one_hot(vxm_backend *be, const vxm_tensor *lab, const int *lut, int nlut, vxm_tensor *y);
vxm_status cpu_elu(vxm_backend *be, const vxm_tensor *x, vxm_tensor *y);
vxm_status cpu_elu_backward(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, vxm_tensor *dx);
vxm_status cpu_blend(vxm_backend *be, float a, const vxm_tensor *x, float b, const vxm_tensor *z, vxm_tensor *y);

#endif
