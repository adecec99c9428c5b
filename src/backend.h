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
} vxm_backend_ops;

struct vxm_backend {
    const vxm_backend_ops *ops;
    vxm_context *ctx; /* errors go here */
    void *impl;       /* backend-private state */
    char desc[256];   /* human-readable device description */
    char spec[32];    /* "cpu", "opencl:P:D" */
    int is_gpu;
};

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

/* Tensor helpers over the ops table (src/core/tensor.c). */
vxm_status vxm_tensor_alloc(vxm_backend *be, const int shape[3], int channels, vxm_tensor *t);
void vxm_tensor_release(vxm_backend *be, vxm_tensor *t);
vxm_status vxm_tensor_upload(vxm_backend *be, vxm_tensor *t, const float *host);
vxm_status vxm_tensor_download(vxm_backend *be, const vxm_tensor *t, float *host);

#endif
