/* Internal to the OpenCL backend: which tile each tiled kernel uses on this device (issue 10).
 *
 * Order of precedence, per kernel (VXM_TILE_CONV: forward and data-gradient convolution, VXM_TILE_FILTER: filter
 * gradient) and output-channel class (Cout <= 16, <= 32, wider):
 *   1. the environment: VXM_OPENCL_CONV_TILE / VXM_OPENCL_FILTER_TILE = "direct" or "TMxTNxTKxRMxRN" (all classes);
 *   2. the tuned file of this device written by `vxm tune` (vxm_cl_tune_path; VXM_TUNE_FILE overrides the path,
 *      VXM_TUNE_FILE=0 ignores tuned files);
 *   3. the built-in table: GPUs run the tiled kernels, CPU devices (PoCL, rusticl) the register-blocked direct
 *      kernels, which measured faster there.
 * A tile the device cannot run (work-group or local-memory limits) is replaced by the direct kernel, with a note
 * when it came from the environment or a tuned file. */
#ifndef VXM_BACKEND_OPENCL_TILE_H
#define VXM_BACKEND_OPENCL_TILE_H

#include "backend_opencl/cl_internal.h"

/* Fills cl->tile and cl->tile_source at backend creation (needs cl->device, max_wg, local_mem, be->is_gpu). */
void vxm_cl_tiles_init(vxm_backend *be);

/* The tile for kernel `which` at `cout` output channels (tm == 0: direct kernel). */
const vxm_cl_tile *vxm_cl_tile_for(const vxm_cl *cl, int which, int cout);

/* Output-channel class of cout (VXM_TILE_COUT16, ...). */
int vxm_cl_tile_class(int cout);

/* Parses "direct" (tm = 0) or "TMxTNxTKxRMxRN"; 0 on success. */
int vxm_cl_tile_parse(const char *s, vxm_cl_tile *t);

/* "direct" or "TMxTNxTKxRMxRN". */
void vxm_cl_tile_format(const vxm_cl_tile *t, char *buf, size_t n);

/* Whether the device can run tile t: divisibility, work-group size, local memory (the tiled kernels keep a
 * tm x tk and a tk x tn block, each row padded by one float against bank conflicts). */
int vxm_cl_tile_fits(const vxm_cl *cl, const vxm_cl_tile *t);

/* The tuned-tile file of this device (malloc'd), or NULL when tuned files are off or there is no cache folder;
 * `create` makes the folder (for writing it). */
char *vxm_cl_tune_path(const vxm_cl *cl, int create);

/* Writes the current cl->tile table to the tuned file (temp + rename); `path` receives the file name. */
vxm_status vxm_cl_tiles_save(vxm_backend *be, char *path, size_t n);

#endif
