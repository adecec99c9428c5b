/* Device selection by name ("cpu", "opencl[:P[:D]]", "gpu:N", "auto") and the device listing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu/cpu_isa.h"
#include "graph/graph.h"

#define MAX_CL_DEVICES 64

static int parse_int(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || (*end && *end != ':') || v < 0 || v > 1000)
        return -1;
    *out = (int)v;
    return (int)(end - s);
}

static vxm_status open_nth_gpu(vxm_context *ctx, int want, const char *spec, vxm_backend **out)
{
    vxm_opencl_device_info info[MAX_CL_DEVICES];
    int n = vxm_opencl_enumerate(ctx, info, MAX_CL_DEVICES), k = 0;
    for (int i = 0; i < n && i < MAX_CL_DEVICES; i++)
        if (info[i].is_gpu && k++ == want)
            return vxm_backend_opencl_create(ctx, info[i].platform, info[i].device, out);
    return vxm_error(ctx, VXM_EDEVICE, spec, "no OpenCL GPU number %d (found %d GPU(s); see 'vxm devices')", want, k);
}

vxm_status vxm_backend_open(vxm_context *ctx, const char *spec, vxm_backend **out)
{
    *out = NULL;
    if (!spec || !strcmp(spec, "cpu"))
        return vxm_backend_cpu_create(ctx, out);
    if (!strcmp(spec, "auto")) {
        /* A GPU when there is one; CPU OpenCL runtimes (PoCL, rusticl/llvmpipe) are slower than the CPU
         * backend, so they are never picked automatically. */
        vxm_status st = open_nth_gpu(ctx, 0, spec, out);
        if (st == VXM_OK)
            return st;
        vxm_context_clear_error(ctx);
        return vxm_backend_cpu_create(ctx, out);
    }
    if (!strncmp(spec, "gpu:", 4)) {
        int n, len = parse_int(spec + 4, &n);
        if (len < 0 || spec[4 + len])
            return vxm_error(ctx, VXM_EINVAL, spec, "expected gpu:N");
        return open_nth_gpu(ctx, n, spec, out);
    }
    if (!strncmp(spec, "opencl", 6) && (spec[6] == '\0' || spec[6] == ':')) {
        int p = 0, d = 0;
        const char *s = spec + 6;
        if (*s == ':') {
            int len = parse_int(s + 1, &p);
            if (len < 0)
                return vxm_error(ctx, VXM_EINVAL, spec, "expected opencl[:PLATFORM[:DEVICE]]");
            s += 1 + len;
            if (*s == ':') {
                len = parse_int(s + 1, &d);
                if (len < 0 || s[1 + len])
                    return vxm_error(ctx, VXM_EINVAL, spec, "expected opencl[:PLATFORM[:DEVICE]]");
            }
        } else {
            /* plain "opencl": the first device of any platform */
            vxm_opencl_device_info info[MAX_CL_DEVICES];
            int n = vxm_opencl_enumerate(ctx, info, MAX_CL_DEVICES);
            if (n <= 0)
                return vxm_error(ctx, VXM_EDEVICE, spec, "no OpenCL device found (is an ICD such as pocl-opencl-icd "
                                                         "installed?)");
            p = info[0].platform;
            d = info[0].device;
        }
        return vxm_backend_opencl_create(ctx, p, d, out);
    }
    return vxm_error(ctx, VXM_EINVAL, spec, "unknown device (use cpu, opencl[:P[:D]], gpu:N or auto)");
}

void vxm_backend_close(vxm_backend *be)
{
    if (be) {
        vxm_weights_free(be->weights_cache);
        be->ops->destroy(be);
    }
}

const char *vxm_backend_describe(const vxm_backend *be)
{
    return be->desc;
}

vxm_status vxm_devices_list(vxm_context *ctx, char *buf, size_t buflen)
{
    size_t used = 0;
    /* The CPU line names the kernel variant the backend would run (issue 12), or why VXM_CPU_ISA cannot be met. */
    const char *isa = vxm_backend_cpu_isa(ctx);
    if (isa)
        used += (size_t)snprintf(buf, buflen, "%-14s CPU backend (plain C, OpenMP; %s kernels)\n", "cpu", isa);
    else {
        used += (size_t)snprintf(buf, buflen, "%-14s CPU backend (plain C, OpenMP; unavailable: %s)\n", "cpu",
                                 vxm_context_error(ctx));
        vxm_context_clear_error(ctx);
    }
    vxm_opencl_device_info info[MAX_CL_DEVICES];
    int n = vxm_opencl_enumerate(ctx, info, MAX_CL_DEVICES);
    if (n == 0 && used < buflen)
        used += (size_t)snprintf(buf + used, buflen - used, "(no OpenCL platform with a device found)\n");
    for (int i = 0; i < n && i < MAX_CL_DEVICES && used < buflen; i++) {
        char spec[32];
        snprintf(spec, sizeof spec, "opencl:%d:%d", info[i].platform, info[i].device);
        used += (size_t)snprintf(buf + used, buflen - used, "%-14s %s / %s [%s, %llu MiB global, %llu MiB max alloc]\n",
                                 spec, info[i].platform_name, info[i].device_name, info[i].is_gpu ? "GPU" : "non-GPU",
                                 info[i].global_mem >> 20, info[i].max_alloc >> 20);
    }
    return VXM_OK;
}
