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
    size_t n; /* floats */
};

static inline int cpu_threads(const vxm_backend *be)
{
    return vxm_context_effective_threads(be->ctx);
}

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

#endif
