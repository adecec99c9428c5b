/* Internal to the OpenCL backend: the backend state, the kernel table and the helpers shared by its files.
 *
 *   cl_device.c   platform/device enumeration, backend create/destroy, program build, kernel table, errors
 *   cl_buffers.c  device buffers, scratch buffers, launches, argument setting
 *   cl_conv.c     convolution (weight packing + register-blocked direct kernel)
 *   cl_ops.c      every other op of vxm_backend_ops
 *   cl_conv_backward.c  training: convolution gradients (data via the forward kernel, filter / bias reductions)
 *   cl_nn_backward.c    training: backward ops of the other layers (pool, upsample, slice, add, sample, resize)
 *   cl_transform_backward.c  training: spatial transform backward (deterministic scatter of the image gradient)
 *   cl_loss.c     training: MSE, NCC, Grad, Dice, KL losses and gradients (deterministic chunked sums)
 *   cl_optim.c    training: Adam, SGD, axpy, fill
 *   cl_synth.c    training: SynthMorph synthesis ops (random fills, intensities, blur, ...), ELU, blend
 *   cl_variant.c  kernels of cl/tiled/ compiled on demand with -D tile parameters (cl_variant.h)
 *   cl_tile.c     tile parameters per device: built-in table, tuned file, environment (cl_tile.h)
 *   cl_pool.c     the pool of released device buffers, reused by later allocations of the same size
 *
 * All kernels live in the cl/ directory, embedded at build time (vxm_cl_sources[]) and compiled once per backend
 * into one program.  Work is queued on one in-order queue; ops return once their kernels are enqueued, buffer_read and
 * finish wait. */
#ifndef VXM_BACKEND_OPENCL_INTERNAL_H
#define VXM_BACKEND_OPENCL_INTERNAL_H

#include <CL/cl.h>

#include "backend.h"

struct vxm_buffer {
    cl_mem mem;
    size_t nfloats;
    int view; /* a sub-buffer of another buffer (buffer_view): released on free, never pooled */
};

/* Kernel table; names in cl_device.c (vxm_cl_kernel_names), same order. */
typedef enum vxm_cl_kid {
    VXM_K_LEAKY_RELU,
    VXM_K_SCALE,
    VXM_K_MAXPOOL,
    VXM_K_UPSAMPLE,
    VXM_K_CONCAT,
    VXM_K_RESIZE,
    VXM_K_SPATIAL_TRANSFORM,
    VXM_K_SPATIAL_TRANSFORM3_C1,
    VXM_K_SPATIAL_TRANSFORM3_C3,
    VXM_K_VECINT_STEP,
    VXM_K_VECINT_STEP3,
    VXM_K_AFFINE,
    VXM_K_SAMPLE_NORMAL,
    VXM_K_CONV_PACK,
    VXM_K_CONV_C32_V8,
    VXM_K_CONV_C32_V4,
    VXM_K_CONV_C32_V1,
    VXM_K_CONV_C16_V8,
    VXM_K_CONV_C16_V4,
    VXM_K_CONV_C16_V1,
    VXM_K_CONV_C8_V8,
    VXM_K_CONV_C8_V4,
    VXM_K_CONV_C8_V1,
    VXM_K_CONV_C4_V8,
    VXM_K_CONV_C4_V4,
    VXM_K_CONV_C4_V1,
    /* fused convolutions (cl/conv.cl vxm_conv_upcat_*, vxm_conv_pool_*; cl_conv_fused.c), created on first use */
    VXM_K_CONV_UPCAT_C32_V8,
    VXM_K_CONV_UPCAT_C32_V4,
    VXM_K_CONV_UPCAT_C32_V1,
    VXM_K_CONV_UPCAT_C16_V8,
    VXM_K_CONV_UPCAT_C16_V4,
    VXM_K_CONV_UPCAT_C16_V1,
    VXM_K_CONV_UPCAT_C8_V8,
    VXM_K_CONV_UPCAT_C8_V4,
    VXM_K_CONV_UPCAT_C8_V1,
    VXM_K_CONV_UPCAT_C4_V8,
    VXM_K_CONV_UPCAT_C4_V4,
    VXM_K_CONV_UPCAT_C4_V1,
    VXM_K_CONV_POOL_C32_V8,
    VXM_K_CONV_POOL_C32_V4,
    VXM_K_CONV_POOL_C32_V1,
    VXM_K_CONV_POOL_C16_V8,
    VXM_K_CONV_POOL_C16_V4,
    VXM_K_CONV_POOL_C16_V1,
    VXM_K_CONV_POOL_C8_V8,
    VXM_K_CONV_POOL_C8_V4,
    VXM_K_CONV_POOL_C8_V1,
    VXM_K_CONV_POOL_C4_V8,
    VXM_K_CONV_POOL_C4_V4,
    VXM_K_CONV_POOL_C4_V1,
    /* training: nn backward */
    VXM_K_ELEMENTWISE_BACKWARD,
    VXM_K_SLICE_CHANNELS,
    VXM_K_MAXPOOL_BACKWARD,
    VXM_K_UPSAMPLE_BACKWARD,
    VXM_K_RESIZE_BACKWARD,
    VXM_K_CONV_FLIP,
    VXM_K_CONV_DILATE,
    VXM_K_CONV_FILTER_PARTIAL_8X16,
    VXM_K_CONV_FILTER_PARTIAL_4X8,
    VXM_K_CONV_BIAS_PARTIAL,
    VXM_K_SUM_PARTIALS,
    /* end training: nn backward */
    /* training: transform backward, losses, optimisers */
    VXM_K_ST_BWD_DISP,
    VXM_K_ST_BWD_COUNT,
    VXM_K_ST_BWD_SLOTS,
    VXM_K_ST_BWD_SORT,
    VXM_K_ST_BWD_IMG,
    VXM_K_SCAN_CHUNKS,
    VXM_K_SCAN_TOP,
    VXM_K_SCAN_APPLY,
    VXM_K_REDUCE_ACC,
    VXM_K_LOSS_FINAL,
    VXM_K_MSE_TERMS,
    VXM_K_MSE_BWD,
    VXM_K_DIFF_TERMS,
    VXM_K_DIFF_BWD,
    VXM_K_DICE_TERMS,
    VXM_K_DICE_BWD,
    VXM_K_KL_SIGMA_TERMS,
    VXM_K_KL_SIGMA_BWD,
    VXM_K_NCC_SUM_FIRST,
    VXM_K_NCC_BOX,
    VXM_K_NCC_CC,
    VXM_K_NCC_DERIV,
    VXM_K_NCC_GRAD,
    VXM_K_ADAM,
    VXM_K_SGD,
    VXM_K_AXPY,
    VXM_K_FILL,
    /* synthesis (SynthMorph, training doc §6.3) and other element-wise ops: cl_synth.c */
    VXM_K_RAND_UNIFORM,
    VXM_K_RAND_NORMAL,
    VXM_K_LABELS_TO_INTENSITY,
    VXM_K_CONV_AXIS,
    VXM_K_MUL_EXP,
    VXM_K_MINMAX_PARTIAL,
    VXM_K_NORMALIZE_GAMMA,
    VXM_K_ARGMAX_CHANNELS,
    VXM_K_ONE_HOT,
    VXM_K_ELU,
    VXM_K_ELU_BACKWARD,
    VXM_K_BLEND,
    /* end training: transform backward, losses, optimisers */
    VXM_K_COUNT
} vxm_cl_kid;

extern const char *const vxm_cl_kernel_names[VXM_K_COUNT];

/* Scratch buffers owned by the backend, grown on demand; reuse is safe because the queue is in order. */
enum {
    VXM_SCRATCH_CONV_WEIGHTS,
    VXM_SCRATCH_VECINT,
    VXM_SCRATCH_CONV_BWD_W,  /* training: flipped weights of conv_backward_data */
    VXM_SCRATCH_CONV_BWD_DY, /* training: dilated dy / per-chunk partial sums of the conv gradients */
    VXM_SCRATCH_TRAIN_A, /* training: per-op temporaries of the losses and transform backward (cl_loss.c, */
    VXM_SCRATCH_TRAIN_B, /*   cl_transform_backward.c): window sums, loss terms, partial sums, cell lists */
    VXM_SCRATCH_TRAIN_C,
    VXM_SCRATCH_CONV_SLAB,      /* conv_pool through slabs (cl_conv_fused.c): conv planes of one slab, */
    VXM_SCRATCH_CONV_SLAB_POOL, /*   and their pooled planes */
    VXM_SCRATCH_COUNT
};

/* Tile parameters of a tiled GEMM-like kernel of cl/tiled/ (cl_tile.h): a work-group computes a tm x tn tile of
 * the result, stepping through the reduction tk at a time through local memory; each work-item holds rm x rn
 * results in registers.  tm == 0: the register-blocked direct kernel (the fallback). */
typedef struct vxm_cl_tile {
    int tm, tn, tk, rm, rn;
} vxm_cl_tile;

/* Which tiled kernel a tile is for; the table holds one tile per kernel and output-channel class. */
enum { VXM_TILE_CONV, VXM_TILE_FILTER, VXM_TILE_NKERNELS };
enum { VXM_TILE_COUT16, VXM_TILE_COUT32, VXM_TILE_COUT_WIDE, VXM_TILE_NCLASSES }; /* Cout <= 16, <= 32, more */

struct vxm_cl_variant;
struct vxm_cl_pool_entry;

typedef struct vxm_cl {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernel[VXM_K_COUNT];
    size_t lws[VXM_K_COUNT]; /* 1-D local size chosen per kernel from the device and kernel limits */
    cl_ulong max_alloc, global_mem;
    size_t max_wg;
    cl_uint compute_units;
    int conv_vx;  /* voxels per work-item of the convolution (device dependent) */
    int conv_cob; /* largest output-channel block of the convolution: 4, 8, 16 or 32 (device dependent) */
    int conv_merge; /* merge taps x channels into one loop in interior rows (off where miscompiled) */
    cl_mem scratch[VXM_SCRATCH_COUNT];
    size_t scratch_floats[VXM_SCRATCH_COUNT];
    cl_ulong local_mem; /* CL_DEVICE_LOCAL_MEM_SIZE, 0 when the device has no dedicated local memory */
    vxm_cl_tile tile[VXM_TILE_NKERNELS][VXM_TILE_NCLASSES]; /* cl_tile.c */
    char tile_source[24]; /* where the tiles came from: "built-in", "tuned", "environment" */
    struct vxm_cl_variant *variants; /* cl_variant.c */
    int nvariants;
    const struct vxm_cl_source_set *building; /* the sources being built (build error messages) */
    struct vxm_cl_pool_entry *pool; /* cl_pool.c */
    int npool, pool_cap;
    size_t pool_bytes, pool_limit; /* bytes held by released buffers, and the most it may hold */
    /* Fault injection for the device-failure tests (cl_buffers.c): VXM_OPENCL_FAULT=alloc:N fails the N-th buffer
     * allocation with CL_MEM_OBJECT_ALLOCATION_FAILURE, launch:N the N-th kernel launch with CL_OUT_OF_RESOURCES
     * (what a lost or reset GPU answers).  0 = off. */
    long fault_alloc, fault_launch, nalloc, nlaunch;
    long live_buffers; /* vxm_buffers allocated and not yet freed (tests check that failures free everything) */
} vxm_cl;

/* Sources of one program and their file names (build error messages name the file and line). */
typedef struct vxm_cl_source_set {
    const char *const *sources;
    const char *const *names;
    int n;
} vxm_cl_source_set;

/* Build failure of `prog`: the first error line of its build log, with the source file and line. */
vxm_status vxm_cl_build_failed(vxm_backend *be, cl_program prog, cl_int err, const vxm_cl_source_set *set);

static inline vxm_cl *vxm_cl_of(vxm_backend *be)
{
    return (vxm_cl *)be->impl;
}

/* Name of an OpenCL error code ("CL_OUT_OF_RESOURCES", or "CL error -9999"); the returned string may be a
 * static buffer for unknown codes. */
const char *vxm_cl_error_name(cl_int err);

/* Records "<what>: <cl error name>" against be->spec and returns the status: VXM_ENOMEM for allocation failures
 * (CL_MEM_OBJECT_ALLOCATION_FAILURE, CL_OUT_OF_HOST_MEMORY, and CL_OUT_OF_RESOURCES when `alloc` is set), else
 * VXM_EDEVICE. */
vxm_status vxm_cl_fail(vxm_backend *be, cl_int err, int alloc, const char *what);

/* Kernel arguments: set in order; the first failure is kept and reported by vxm_cl_args_done. */
typedef struct vxm_cl_args {
    cl_kernel k;
    cl_uint idx;
    cl_int err;
    cl_uint bad_idx;
    vxm_status st; /* the kernel could not be created (vxm_cl_kernel_ready): returned by vxm_cl_args_done */
} vxm_cl_args;

/* Starts the arguments of table kernel kid, creating it on first use (vxm_cl_kernel_ready). */
void vxm_cl_args_begin(vxm_cl_args *a, vxm_backend *be, vxm_cl_kid kid);
void vxm_cl_args_begin_kernel(vxm_cl_args *a, cl_kernel k); /* a kernel outside the table (cl_variant.h) */
void vxm_cl_arg_mem(vxm_cl_args *a, cl_mem m);
void vxm_cl_arg_int(vxm_cl_args *a, int v);
void vxm_cl_arg_uint(vxm_cl_args *a, unsigned v);
void vxm_cl_arg_ulong(vxm_cl_args *a, unsigned long long v);
void vxm_cl_arg_float(vxm_cl_args *a, float v);
void vxm_cl_arg_raw(vxm_cl_args *a, size_t size, const void *p);
vxm_status vxm_cl_args_done(vxm_backend *be, vxm_cl_args *a, vxm_cl_kid kid);
vxm_status vxm_cl_args_done_named(vxm_backend *be, vxm_cl_args *a, const char *kernel_name);

/* Creates kernel `kid` if it is one of those created on first use (the fused convolutions: cl_device.c). */
vxm_status vxm_cl_kernel_ready(vxm_backend *be, vxm_cl_kid kid);

/* Enqueues kernel `kid` over n work-items (1-D; the global size is n rounded up to the kernel's local size; the
 * kernels check their bounds).  n == 0 enqueues nothing. */
vxm_status vxm_cl_launch1(vxm_backend *be, vxm_cl_kid kid, size_t n);
/* 2-D launch: n0 work-items rounded up to the local size in dimension 0, exactly n1 in dimension 1 (local 1). */
vxm_status vxm_cl_launch2(vxm_backend *be, vxm_cl_kid kid, size_t n0, size_t n1);

/* Enqueues kernel k (named in messages) with explicit global and local sizes (each global a multiple of its local
 * size); dims 1 to 3.  Nothing is enqueued when a global size is 0. */
vxm_status vxm_cl_launch_nd(vxm_backend *be, cl_kernel k, const char *name, cl_uint dims, const size_t *global,
                            const size_t *local);

/* A scratch buffer of at least nfloats floats (grown, never shrunk, freed with the backend). */
vxm_status vxm_cl_scratch(vxm_backend *be, int slot, size_t nfloats, cl_mem *out);

/* Device-to-device copy of nfloats floats (nothing when src == dst). */
vxm_status vxm_cl_copy(vxm_backend *be, cl_mem src, cl_mem dst, size_t nfloats);

/* Checks that a tensor has a buffer holding its elements (VXM_EINVAL otherwise). */
vxm_status vxm_cl_check_tensor(vxm_backend *be, const vxm_tensor *t, const char *what);

/* Voxel count of a tensor (fits in 32 bits once vxm_cl_check_tensor passed). */
static inline size_t vxm_cl_nvox(const vxm_tensor *t)
{
    return (size_t)t->shape[0] * (size_t)t->shape[1] * (size_t)t->shape[2];
}

/* VXM_ESHAPE "op: shapes AxBxCxD and ... do not fit". */
static inline vxm_status vxm_cl_shape_error(vxm_backend *be, const char *op, const vxm_tensor *a, const vxm_tensor *b)
{
    return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: shapes %dx%dx%dx%d and %dx%dx%dx%d do not fit", op,
                     a->shape[0], a->shape[1], a->shape[2], a->channels, b->shape[0], b->shape[1], b->shape[2],
                     b->channels);
}

/* The buffer pool (cl_pool.c): a released buffer is kept (up to cl->pool_limit bytes, oldest evicted first) and
 * handed to the next allocation of the same size, or of a size within 1/8 below it, so that the per-node
 * allocations of a training step or of a batch of pairs reuse the previous run's buffers (no allocation, no page
 * faults on first touch).  VXM_OPENCL_POOL_MB sets the limit (0: no pool). */
void vxm_cl_pool_init(vxm_backend *be);
void vxm_cl_fault_init(vxm_cl *cl); /* reads VXM_OPENCL_FAULT (cl_buffers.c) */
int vxm_cl_pool_take(vxm_cl *cl, size_t nfloats, vxm_buffer *b); /* 1 when b got a pooled buffer */
void vxm_cl_pool_trim(vxm_backend *be);                           /* releases every pooled buffer */
int vxm_cl_pool_give(vxm_cl *cl, vxm_buffer *b);                 /* 1 when the pool kept b->mem */
void vxm_cl_pool_flush(vxm_cl *cl);

/* Ops implemented in cl_buffers.c, cl_conv.c and cl_ops.c. */
vxm_status vxm_cl_buffer_alloc(vxm_backend *be, size_t nfloats, vxm_buffer **out);
void vxm_cl_buffer_free(vxm_backend *be, vxm_buffer *buf);
vxm_status vxm_cl_buffer_view(vxm_backend *be, vxm_buffer *parent, size_t offset, size_t nfloats, vxm_buffer **out);
vxm_status vxm_cl_buffer_write(vxm_backend *be, vxm_buffer *dst, const float *src, size_t nfloats);
vxm_status vxm_cl_buffer_read(vxm_backend *be, const vxm_buffer *src, float *dst, size_t nfloats);
vxm_status vxm_cl_finish(vxm_backend *be);

vxm_status vxm_cl_conv(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                       const vxm_conv_params *p, vxm_tensor *y);
vxm_status vxm_cl_leaky_relu(vxm_backend *be, const vxm_tensor *x, float alpha, vxm_tensor *y);
vxm_status vxm_cl_maxpool(vxm_backend *be, const vxm_tensor *x, const int f[3], vxm_tensor *y);
vxm_status vxm_cl_upsample_nearest(vxm_backend *be, const vxm_tensor *x, const int f[3], vxm_tensor *y);
vxm_status vxm_cl_concat(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *y);
vxm_status vxm_cl_scale(vxm_backend *be, const vxm_tensor *x, float s, vxm_tensor *y);
vxm_status vxm_cl_resize_linear(vxm_backend *be, const vxm_tensor *x, vxm_resize_mapping map,
                                const float factor[3], vxm_tensor *y);
vxm_status vxm_cl_vecint(vxm_backend *be, const vxm_tensor *v, int ndim, int steps, vxm_tensor *y);
vxm_status vxm_cl_spatial_transform(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, int ndim,
                                    vxm_interp interp, int use_fill, float fill, vxm_tensor *y);
vxm_status vxm_cl_affine_to_disp(vxm_backend *be, const float *mat, int ndim, int shift_center, vxm_tensor *y);
vxm_status vxm_cl_sample_normal(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logvar,
                                const vxm_tensor *eps, vxm_tensor *y);


/* Training ops (backend.h documents each). */
vxm_status vxm_cl_conv_backward_data(vxm_backend *be, const vxm_tensor *dy, const vxm_buffer *w, const vxm_conv_params *p, vxm_tensor *dx);
vxm_status vxm_cl_conv_backward_filter(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, const vxm_conv_params *p, vxm_buffer *dw);
vxm_status vxm_cl_conv_backward_bias(vxm_backend *be, const vxm_tensor *dy, vxm_buffer *db);
vxm_status vxm_cl_leaky_relu_backward(vxm_backend *be, const vxm_tensor *ref, const vxm_tensor *dy, float alpha, vxm_tensor *dx);
vxm_status vxm_cl_maxpool_backward(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, const int f[3], float tie_tol, vxm_tensor *dx);
vxm_status vxm_cl_upsample_nearest_backward(vxm_backend *be, const vxm_tensor *dy, const int f[3], vxm_tensor *dx);
vxm_status vxm_cl_slice_channels(vxm_backend *be, const vxm_tensor *x, int c0, vxm_tensor *y);
vxm_status vxm_cl_add(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *y);
vxm_status vxm_cl_resize_linear_backward(vxm_backend *be, const vxm_tensor *dy, vxm_resize_mapping map, const float factor[3], vxm_tensor *dx);
vxm_status vxm_cl_sample_normal_backward(vxm_backend *be, const vxm_tensor *logvar, const vxm_tensor *eps, const vxm_tensor *dy, vxm_tensor *dlogvar);
vxm_status vxm_cl_spatial_transform_backward(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, const vxm_tensor *dy, int ndim, int use_fill, vxm_tensor *dimg, vxm_tensor *ddisp);
vxm_status vxm_cl_mse_loss(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *out);
vxm_status vxm_cl_mse_loss_backward(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, float scale, vxm_tensor *da);
vxm_status vxm_cl_ncc_loss(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3], float eps, vxm_tensor *out);
vxm_status vxm_cl_ncc_loss_backward(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3], float eps, float scale, vxm_tensor *dI, vxm_tensor *dJ);
vxm_status vxm_cl_grad_loss(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, vxm_tensor *out);
vxm_status vxm_cl_grad_loss_backward(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, float scale, vxm_tensor *dflow);
vxm_status vxm_cl_dice_loss(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, vxm_tensor *out);
vxm_status vxm_cl_dice_loss_backward(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, float scale, vxm_tensor *dpred);
vxm_status vxm_cl_kl_loss(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim, float prior_lambda, vxm_tensor *out);
vxm_status vxm_cl_kl_loss_backward(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim, float prior_lambda, float scale, vxm_tensor *dmean, vxm_tensor *dlogsigma);
vxm_status vxm_cl_adam_update(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, vxm_buffer *m, vxm_buffer *v, size_t n, float lr_t, float beta1, float beta2, float eps);
vxm_status vxm_cl_sgd_update(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, size_t n, float lr);
vxm_status vxm_cl_axpy(vxm_backend *be, float a, const vxm_buffer *x, vxm_buffer *y, size_t n);
vxm_status vxm_cl_fill(vxm_backend *be, vxm_buffer *p, size_t n, float value);
vxm_status vxm_cl_rand_fill(vxm_backend *be, vxm_buffer *p, size_t n, unsigned long long seed, unsigned long long stream, int dist, float a, float b);
vxm_status vxm_cl_labels_to_intensity(vxm_backend *be, const vxm_tensor *lab, int nlab, const float *mean, const float *std, const int *blank, unsigned long long seed, unsigned long long stream, vxm_tensor *y);
vxm_status vxm_cl_conv_axis(vxm_backend *be, const vxm_tensor *x, int axis, const float *taps, int ntaps, vxm_tensor *y);
vxm_status vxm_cl_mul_exp(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *f, vxm_tensor *y);
vxm_status vxm_cl_minmax(vxm_backend *be, const vxm_tensor *x, float out[2]);
vxm_status vxm_cl_normalize_gamma(vxm_backend *be, const vxm_tensor *x, float lo, float hi, const float *expo, vxm_tensor *y);
vxm_status vxm_cl_argmax_channels(vxm_backend *be, const vxm_tensor *x, vxm_tensor *y);
vxm_status vxm_cl_one_hot(vxm_backend *be, const vxm_tensor *lab, const int *lut, int nlut, vxm_tensor *y);
vxm_status vxm_cl_elu(vxm_backend *be, const vxm_tensor *x, vxm_tensor *y);
vxm_status vxm_cl_elu_backward(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, vxm_tensor *dx);
vxm_status vxm_cl_blend(vxm_backend *be, float a, const vxm_tensor *x, float b, const vxm_tensor *z, vxm_tensor *y);
vxm_status vxm_cl_conv_pool(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, const int f[3], vxm_tensor *y);
vxm_status vxm_cl_conv_upcat(vxm_backend *be, const vxm_tensor *a, const int f[3], const vxm_tensor *skip, const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, vxm_tensor *y);

#endif
