/* Internal to the OpenCL backend: kernels of cl/tiled/ compiled on demand with -D parameters (issue 10).
 *
 * Tiled kernels take their tile sizes as compile-time constants (local-memory arrays, fully unrolled register
 * blocks), so each tile is its own program: 00_common.cl + one cl/tiled/ file, built with
 * "-cl-std=CL1.2 <defines>" the first time a launch needs it, kept for the backend's life and stored in the on-disk
 * binary cache (cl_cache.h), as CLBlast does per parameter set.  Devices that never pick a tile never build one. */
#ifndef VXM_BACKEND_OPENCL_VARIANT_H
#define VXM_BACKEND_OPENCL_VARIANT_H

#include "backend_opencl/cl_internal.h"

/* Kernel `kernel` of cl/tiled/<source> built with `defines` (e.g. "-DTM=64 -DTN=32 ..."); the backend owns it. */
vxm_status vxm_cl_variant_kernel(vxm_backend *be, const char *source, const char *defines, const char *kernel,
                                 cl_kernel *out);

/* "-DTM=.. -DTN=.. -DTK=.. -DRM=.. -DRN=.." for a tile (buf of at least 96 bytes). */
void vxm_cl_tile_defines(const vxm_cl_tile *t, char *buf, size_t n);

/* Releases every variant program and kernel (backend destroy). */
void vxm_cl_variants_free(vxm_cl *cl);

#endif
