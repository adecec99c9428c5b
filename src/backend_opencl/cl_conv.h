/* Internal to the OpenCL backend: the convolution's launch plan (cl_conv.c), shared by vxm_cl_conv and the fused
 * ops conv_pool / conv_upcat (cl_conv_fused.c, issue 10).  Every output is one fma chain whose order is fixed by the
 * plan's input-channel ranges (cl/conv.cl); the direct and the tiled kernels and their fused variants all follow
 * the ranges of the plain convolution's plan for the same layer, so fused and unfused results are bitwise equal on
 * a device. */
#ifndef VXM_BACKEND_OPENCL_CONV_H
#define VXM_BACKEND_OPENCL_CONV_H

#include "backend_opencl/cl_internal.h"

/* conv_upcat's coarse input: conv input channels [0, a->channels) are upsample_nearest_f(a), the rest the skip
 * tensor passed as the conv's input. */
typedef struct vxm_cl_upcat {
    const vxm_tensor *a;
    int f[3];
} vxm_cl_upcat;

/* Modes of the direct kernel (cl/conv.cl VXM_MODE_*). */
enum { VXM_CONV_PLAIN, VXM_CONV_UPCAT, VXM_CONV_POOL };

typedef struct vxm_cl_conv_plan {
    int cin, cout; /* input channels (the concatenation's for upcat), output channels */
    size_t ktaps;
    int cob, vx, crange, nsplit; /* the direct kernel's plan: nsplit input-channel ranges of crange channels */
    vxm_cl_tile tile;            /* the tiled kernel tk of this tile, or tk = NULL: the direct kernel */
    cl_kernel tk;
    cl_mem wp; /* weights and bias packed by vxm_conv_pack with Cout padded to coutp (scratch) */
    int coutp;
    const vxm_buffer *w, *b;
    const vxm_cl_upcat *up; /* NULL: plain convolution */
} vxm_cl_conv_plan;

/* Checks the weight and bias sizes and plans the convolution of cin -> cout channels whose output grid's fastest
 * extent is m2: the direct kernel's channel block, voxels and input-channel ranges, the tiled kernel where the
 * tile table picks one that the device runs, and the packed weights. */
vxm_status vxm_cl_conv_plan_init(vxm_backend *be, int cin, int cout, int m2, const vxm_buffer *w, const vxm_buffer *b,
                                 const vxm_conv_params *p, const vxm_cl_upcat *up, vxm_cl_conv_plan *P);

/* y = conv(x) (x: the skip tensor of an upcat plan) with the plan's kernel; a tile the device refuses at launch is
 * dropped and the direct kernel runs instead (P is updated).  y may be a slab of consecutive planes of the
 * convolution's output grid: its extents set the launch, and p->pad_lo[0] = pad - first plane * stride (negative
 * allowed) places it.  Geometry is checked by the caller. */
vxm_status vxm_cl_conv_plan_run(vxm_backend *be, vxm_cl_conv_plan *P, const vxm_tensor *x, const vxm_conv_params *p,
                                vxm_tensor *y);

/* Checks kernel, stride and padding; m = the convolution's output grid for input extents n, ceil(n / stride). */
vxm_status vxm_cl_conv_grid(vxm_backend *be, const char *op, const int n[3], const vxm_conv_params *p, int m[3]);

/* The direct kernel of `mode` with vx voxels per work-item on weights packed for the direct kernel: PLAIN / UPCAT
 * one launch per input-channel range; POOL (f: the pool factors; y: the pooled grid) one launch running every
 * range. */
vxm_status vxm_cl_conv_direct(vxm_backend *be, const vxm_cl_conv_plan *P, int mode, int vx, const int f[3],
                              const vxm_tensor *x, const vxm_conv_params *p, vxm_tensor *y);

/* The largest voxel count per work-item (8, 4, 1; at most the plan's) with which one POOL launch of the direct
 * kernel, over f0*f1*f2 window positions and the whole reduction, stays within the device's loop budget
 * (cl_loop_budget.h); 0 when none does. */
int vxm_cl_conv_pool_vx(const vxm_cl *cl, const vxm_cl_conv_plan *P, const int f[3]);

/* The arguments the direct and the tiled convolution kernels share, in their order: x, wp, y, the input shape, cin
 * (the weights' input channels), the output's last two extents, Cout, CoutP, kernel, stride, padding, leaky,
 * alpha. */
void vxm_cl_conv_args(vxm_cl_args *a, const vxm_tensor *x, int cin, cl_mem wp, const vxm_tensor *y, int coutp,
                      const vxm_conv_params *p);

/* The upcat arguments of the fused kernels (xa, ca, f0, f1, f2, na1, na2); for a plain kernel (up = NULL) neutral
 * values with x standing in for xa. */
void vxm_cl_upcat_args(vxm_cl_args *a, const vxm_cl_upcat *up, const vxm_tensor *x);

/* The fused ops of backend.h (cl_conv_fused.c), bitwise equal to the unfused op sequences on the same device. */
vxm_status vxm_cl_conv_pool_fused(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                                  const vxm_conv_params *p, const int f[3], vxm_tensor *y);
vxm_status vxm_cl_conv_upcat_fused(vxm_backend *be, const vxm_tensor *a, const int f[3], const vxm_tensor *skip,
                                   const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, vxm_tensor *y);

#endif
