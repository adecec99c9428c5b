/* Helpers of the OpenCL tile tests (test_conv_tiles.c, test_conv_fused_cl.c): the set-up, each device opened with a
 * forced tile, fixed-seed data, agreement with the CPU backend within test_ops_agree.c's tolerance, and the notes
 * that say a tile did not run. */
#ifndef VXM_TEST_TILES_H
#define VXM_TEST_TILES_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_backends.h"
#include "test_util.h"

static inline void tt_fill(float *p, size_t n, unsigned long long *s, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)tu_urand(s, lo, hi);
}

/* got vs the CPU reference within test_ops_agree.c's tolerance (nmse <= 1e-10, max abs diff <= 1e-5 (1 +
 * max |ref|)); the numbers in `why`. */
static inline int tt_agrees(const float *got, const float *ref, size_t n, char *why, size_t wn)
{
    double refmax = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(ref[i]) > refmax)
            refmax = fabs(ref[i]);
    double nmse = tu_nmse(got, ref, n), mad = tu_max_abs_diff(got, ref, n), tol = 1e-5 * (1.0 + refmax);
    snprintf(why, wn, "vs cpu: nmse %.3g (<= 1e-10), max abs diff %.3g (<= %.3g)", nmse, mad, tol);
    return nmse <= 1e-10 && mad <= tol;
}

/* The fallback notes of cl_conv_tiled.c / cl_tile.c: 1 when the tile did not run (why in `why`); clears the notes. */
static inline int tt_tile_refused(vxm_context *ctx, char *why, size_t n)
{
    const char *notes = vxm_context_notes(ctx);
    const char *m = strstr(notes, "does not fit");
    if (!m)
        m = strstr(notes, "cannot run");
    if (m)
        snprintf(why, n, "%.*s", (int)strcspn(notes, "\n"), notes);
    vxm_context_clear_notes(ctx);
    return m != NULL;
}

/* A tile test's context, CPU backend (the reference) and OpenCL devices. */
typedef struct tt_env {
    vxm_context *ctx;
    vxm_backend *cpu;
    vxm_opencl_device_info info[TB_MAX];
    int nd;
} tt_env;

/* The set-up of a tile test: rusticl enabled, no tuned-tile file, the context, the CPU backend and the OpenCL devices
 * (a SKIP line when there are none).  1 after a FAIL line when something failed. */
static inline int tt_setup(const char *test, tt_env *e)
{
    (void)tu_have_shared; /* test_util.h helpers the tile tests do not need */
    (void)tu_shared_path;
    setenv("RUSTICL_ENABLE", "llvmpipe", 0);
    setenv("VXM_TUNE_FILE", "0", 1);
    e->cpu = NULL;
    e->nd = 0;
    e->ctx = vxm_context_create();
    if (!e->ctx || vxm_backend_cpu_create(e->ctx, &e->cpu) != VXM_OK) {
        printf("FAIL %s: cpu backend: %s\n", test, e->ctx ? vxm_context_error(e->ctx) : "no context");
        vxm_context_free(e->ctx);
        return 1;
    }
    e->nd = vxm_opencl_enumerate(e->ctx, e->info, TB_MAX);
    if (e->nd == 0)
        tu_skip(test, "no OpenCL device");
    return 0;
}

/* Device `info` opened with VXM_OPENCL_CONV_TILE=tile; NULL after a FAIL line when it does not open, or after a SKIP
 * line when the device cannot run the tile ("direct" always runs). */
static inline vxm_backend *tt_open_tile(vxm_context *ctx, const vxm_opencl_device_info *info, const char *tile,
                                        const char *test)
{
    char name[160], why[400], sum[256];
    setenv("VXM_OPENCL_CONV_TILE", tile, 1);
    vxm_backend *be = NULL;
    vxm_context_clear_notes(ctx);
    snprintf(name, sizeof name, "%s open device", test);
    if (vxm_backend_opencl_create(ctx, info->platform, info->device, &be) != VXM_OK) {
        tu_report(0, name, "%s", vxm_context_error(ctx));
        vxm_context_clear_error(ctx);
        return NULL;
    }
    vxm_opencl_tile_summary(be, sum, sizeof sum);
    snprintf(why, sizeof why, "the tile table does not hold the tile: %s", sum);
    if (strcmp(tile, "direct") != 0 && (tt_tile_refused(ctx, why, sizeof why) || !strstr(sum, tile))) {
        printf("SKIP %s [%s] on %s: %s\n", test, tile, be->spec, why);
        vxm_backend_close(be);
        return NULL;
    }
    return be;
}

#endif
