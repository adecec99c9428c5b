/* OpenCL program cache key (issue 10, src/backend_opencl/cl_cache.h): any change of the kernel source, the build
 * options or the driver (version strings) gives another key, i.e. another cache file, so a stale binary is never
 * loaded; the same inputs give the same key; and the context's notes collect one line per notice. */
#include "backend_opencl/cl_cache.h"
#include "core/context.h"
#include "test_util.h"

int main(void)
{
    const char *src[2] = {"kernel void a(global float *x) { x[0] = 1.0f; }", "kernel void b() {}"};
    const char *src_edit[2] = {"kernel void a(global float *x) { x[0] = 2.0f; }", "kernel void b() {}"};
    const char *src_moved[2] = {"kernel void a(global float *x) { x[0] = 1.0f; }kernel void b() {}", ""};
    const char *f[6] = {"-cl-std=CL1.2", "PoCL", "OpenCL 3.0 PoCL 3.1", "cpu", "OpenCL 3.0", "3.1"};
    const char *f_drv[6] = {"-cl-std=CL1.2", "PoCL", "OpenCL 3.0 PoCL 3.1", "cpu", "OpenCL 3.0", "3.2"};
    const char *f_opt[6] = {"-cl-std=CL2.0", "PoCL", "OpenCL 3.0 PoCL 3.1", "cpu", "OpenCL 3.0", "3.1"};
    uint64_t k = vxm_cl_cache_key(src, 2, f, 6);
    tu_report(k == vxm_cl_cache_key(src, 2, f, 6), "cl cache key: deterministic", "two keys of the same input differ");
    tu_report(k != vxm_cl_cache_key(src_edit, 2, f, 6), "cl cache key: kernel source edit", "same key");
    tu_report(k != vxm_cl_cache_key(src_moved, 2, f, 6), "cl cache key: text moved between sources", "same key");
    tu_report(k != vxm_cl_cache_key(src, 2, f_drv, 6), "cl cache key: driver version", "same key");
    tu_report(k != vxm_cl_cache_key(src, 2, f_opt, 6), "cl cache key: build options", "same key");
    tu_report(k != vxm_cl_cache_key(src, 2, f, 5), "cl cache key: a field fewer", "same key");

    vxm_context *ctx = vxm_context_create();
    vxm_note(ctx, "warning: %s: one", "a");
    vxm_note(ctx, "note: two\nthree");
    tu_report(strcmp(vxm_context_notes(ctx), "warning: a: one\nnote: two\n") == 0, "context notes: one line each",
              "got \"%s\"", vxm_context_notes(ctx));
    vxm_context_clear_notes(ctx);
    tu_report(vxm_context_notes(ctx)[0] == '\0', "context notes: cleared", "still \"%s\"", vxm_context_notes(ctx));
    vxm_context_free(ctx);
    return tu_exit_code();
}
