/* Per-work-item loop budget of Mesa llvmpipe (rusticl), shared by the kernels with long loops (cl_conv.c,
 * cl_conv_backward.c). */
#ifndef VXM_CL_LOOP_BUDGET_H
#define VXM_CL_LOOP_BUDGET_H

#include <string.h>

#include "backend_opencl/cl_internal.h"

/* Mesa llvmpipe (rusticl, seen with Mesa 22.3) silently ends every loop of a work-item once all its loops together
 * ran 65535 iterations (gallivm's loop limiter, LP_MAX_TGSI_LOOP_ITERATIONS), and it ignores the unroll hints, so the
 * small register-block loops count on every iteration too.  Long reductions are therefore cut into launches that stay
 * within this budget: 3/4 of the limit, the rest left for the loops around the measured one.  0 = no limit. */
static inline unsigned vxm_cl_loop_budget(const vxm_cl *cl)
{
    char name[256] = "";
    if (clGetPlatformInfo(cl->platform, CL_PLATFORM_NAME, sizeof name, name, NULL) != CL_SUCCESS)
        return 0;
    return strstr(name, "rusticl") ? 65535u / 4u * 3u : 0u;
}

#endif
