/* Opens every backend present on this machine for cross-backend tests: the CPU backend first, then every
 * OpenCL device (PoCL, Mesa rusticl with RUSTICL_ENABLE=llvmpipe, real GPUs). */
#ifndef VXM_TEST_BACKENDS_H
#define VXM_TEST_BACKENDS_H

#include "backend.h"
#include "test_util.h"

#define TB_MAX 16

typedef struct tb_list {
    int n;
    vxm_backend *be[TB_MAX];
} tb_list;

static inline void tb_open_all(vxm_context *ctx, tb_list *l)
{
    l->n = 0;
    if (vxm_backend_cpu_create(ctx, &l->be[l->n]) == VXM_OK)
        l->n++;
    else
        printf("FAIL open cpu backend: %s\n", vxm_context_error(ctx));
    vxm_opencl_device_info info[TB_MAX];
    int nd = vxm_opencl_enumerate(ctx, info, TB_MAX - 1);
    if (nd == 0)
        tu_skip("opencl devices", "no OpenCL device found; only the CPU backend is tested");
    for (int i = 0; i < nd && l->n < TB_MAX; i++) {
        if (vxm_backend_opencl_create(ctx, info[i].platform, info[i].device, &l->be[l->n]) == VXM_OK)
            l->n++;
        else
            tu_report(0, "open opencl device", "%s", vxm_context_error(ctx));
    }
}

static inline void tb_close_all(tb_list *l)
{
    for (int i = 0; i < l->n; i++)
        vxm_backend_close(l->be[i]);
    l->n = 0;
}

#endif
