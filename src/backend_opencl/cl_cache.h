/* Internal to the OpenCL backend: the on-disk cache of built program binaries (issue 10), so that a run does not
 * recompile all of cl/ (seconds on PoCL) when the same kernels, build options and driver were built before.
 *
 * Directory: $VXM_CL_CACHE_DIR, else $XDG_CACHE_HOME/vxmcl, else $HOME/.cache/vxmcl; VXM_CL_CACHE=0 disables it,
 * and PoCL with its own kernel cache on does not use it (see driver_caches in cl_cache.c).
 * One file per key, "program-<16 hex>.bin"; the key hashes the kernel sources, the build options, the platform
 * name and version, the device name and version, the driver version, vxm's version and $VXM_CL_CACHE_SALT (tests
 * simulate a driver change with it).  A file that is short, damaged or rejected by the driver is ignored with one
 * warning (a context note, printed by the CLI) and rewritten; a cache that cannot be written is skipped silently.
 * VXM_CL_CACHE_DEBUG=1 adds a note saying whether the program was loaded from or stored to the cache. */
#ifndef VXM_BACKEND_OPENCL_CACHE_H
#define VXM_BACKEND_OPENCL_CACHE_H

#include <stdint.h>

#include "backend_opencl/cl_internal.h"

/* FNV-1a 64 over the sources and then the fields, each followed by its length, so that moving text from one
 * field to the next changes the key. */
uint64_t vxm_cl_cache_key(const char *const *sources, int nsources, const char *const *fields, int nfields);

/* The vxmcl cache directory ($VXM_CL_CACHE_DIR, else $XDG_CACHE_HOME/vxmcl, else $HOME/.cache/vxmcl) (malloc'd), or
 * NULL when there is no home.  `create`: made if missing (NULL when it cannot be); else only named, so that a
 * reader (the tuned-tile lookup of every run) leaves no folder behind.  Also holds the tuned tiles (cl_tile.h). */
char *vxm_cl_cache_dir_path(int create);

/* A platform (p) or device (d) info string of any length (malloc'd; "?" when the driver does not answer). */
char *vxm_cl_info_string(cl_platform_id p, cl_device_id d, unsigned what);

/* Called with the failed program (its build log) and the error; returns the status to report. */
typedef vxm_status (*vxm_cl_build_failed_fn)(vxm_backend *be, cl_program prog, cl_int err);

/* Builds a program for cl->device with `options`: from the cache file when it is valid, else from `sources` (then
 * stores the binary).  A source build failure goes to build_failed (its message names the source line). */
vxm_status vxm_cl_cache_build_program(vxm_backend *be, const char *const *sources, int nsources, const char *options,
                                      vxm_cl_build_failed_fn build_failed, cl_program *out);

/* The same for be's main program, cl->program. */
vxm_status vxm_cl_cache_build(vxm_backend *be, const char *const *sources, int nsources, const char *options,
                              vxm_cl_build_failed_fn build_failed);

#endif
