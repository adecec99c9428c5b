/* Placeholder until the OpenCL backend lands: reports no devices. */
#include "backend.h"

int vxm_opencl_enumerate(vxm_context *ctx, vxm_opencl_device_info *out, int max)
{
    (void)ctx; (void)out; (void)max;
    return 0;
}

vxm_status vxm_backend_opencl_create(vxm_context *ctx, int platform, int device, vxm_backend **out)
{
    (void)platform; (void)device; *out = NULL;
    return vxm_error(ctx, VXM_EUNSUPPORTED, "opencl", "OpenCL backend not built");
}
