/* Measured float32 FMA rate of one OpenCL device (issue 10: "achieved TFLOP/s against the device's measured
 * peak"): every work-item runs CHAINS independent float4 (or wider, below) fma chains (enough independent work
 * to hide the FMA latency on GPUs and CPUs alike), with enough work-groups to fill every compute unit many times
 * over (so the last partial wave costs little).  The work per run is scaled until one run takes about 0.2 s; the
 * best of RUNS runs (host clock around enqueue + clFinish) counts.  Prints "<GFLOP/s>" on stdout; -v adds details
 * on stderr.  Device numbering is that of vxm devices (clGetPlatformIDs / clGetDeviceIDs order, cl_device.c).
 *   cl_peak --device opencl:P:D [-v]
 * Bench tool only: never used by the library or the tests. */
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHAINS 8 /* vector accumulators per work-item: 32 or more independent fma per step */
#define RUNS 5
#define TARGET_S 0.2

/* Four copies of the 8-chain step per loop trip: the loop counter costs ~1 % of the issue slots.  VW (build
 * option) is the vector width: 4, or the device's native float width when wider (PoCL compiles a float4 to one
 * 128-bit instruction and does not widen it across work-items, which would show a quarter of an AVX-512 core). */
static const char *kernel_src =
    "#define VEC_(n) float##n\n"
    "#define VEC(n) VEC_(n)\n"
    "typedef VEC(VW) floatv;\n"
    "#define STEP c0 = fma(c0, a, b); c1 = fma(c1, a, b); c2 = fma(c2, a, b); c3 = fma(c3, a, b); \\\n"
    "             c4 = fma(c4, a, b); c5 = fma(c5, a, b); c6 = fma(c6, a, b); c7 = fma(c7, a, b);\n"
    "__kernel void peak(__global float *out, float av, float bv, int iters)\n"
    "{\n"
    "    floatv a = (floatv)(av), b = (floatv)(bv * (float)(get_global_id(0) & 7));\n"
    "    floatv c0 = (floatv)(0.0f), c1 = (floatv)(1.0f), c2 = (floatv)(2.0f), c3 = (floatv)(3.0f);\n"
    "    floatv c4 = (floatv)(4.0f), c5 = (floatv)(5.0f), c6 = (floatv)(6.0f), c7 = (floatv)(7.0f);\n"
    "    for (int i = 0; i < iters; i++) { STEP STEP STEP STEP }\n"
    "    floatv s = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7));\n"
    "#if VW == 16\n"
    "    float8 s8 = s.lo + s.hi;\n"
    "#else\n"
    "    float8 s8 = (float8)(0.0f);\n"
    "#endif\n"
    "#if VW == 8\n"
    "    s8 = s;\n"
    "#endif\n"
    "#if VW >= 8\n"
    "    float4 s4 = s8.lo + s8.hi;\n"
    "#else\n"
    "    float4 s4 = s;\n"
    "#endif\n"
    "    out[get_global_id(0)] = (s4.x + s4.y) + (s4.z + s4.w);\n"
    "}\n";
#define FLOP_PER_TRIP(vw) (4.0 * CHAINS * (vw) * 2) /* 4 steps x CHAINS vector fma x vw lanes x 2 flop */

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* "opencl:P:D" -> the device, or NULL with a message. */
static cl_device_id find_device(const char *spec)
{
    int p, d;
    char tail;
    if (sscanf(spec, "opencl:%d:%d%c", &p, &d, &tail) != 2 || p < 0 || d < 0) {
        fprintf(stderr, "cl_peak: %s: not an OpenCL device (opencl:P:D, see vxm devices)\n", spec);
        return NULL;
    }
    cl_uint np = 0, nd = 0;
    cl_device_id dev = NULL;
    if (clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || (cl_uint)p >= np) {
        fprintf(stderr, "cl_peak: %s: no such OpenCL platform (%u platforms)\n", spec, np);
        return NULL;
    }
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (plats && clGetPlatformIDs(np, plats, NULL) == CL_SUCCESS &&
        clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) == CL_SUCCESS && (cl_uint)d < nd) {
        cl_device_id *devs = calloc(nd, sizeof *devs);
        if (devs && clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, devs, NULL) == CL_SUCCESS)
            dev = devs[d];
        free(devs);
    }
    free(plats);
    if (!dev)
        fprintf(stderr, "cl_peak: %s: no such OpenCL device\n", spec);
    return dev;
}

typedef struct {
    cl_context ctx;
    cl_command_queue q;
    cl_program prog;
    cl_kernel k;
    cl_mem out;
    size_t global, local;
    int vw;
} peak_setup;

static void release(peak_setup *s)
{
    if (s->out)
        clReleaseMemObject(s->out);
    if (s->k)
        clReleaseKernel(s->k);
    if (s->prog)
        clReleaseProgram(s->prog);
    if (s->q)
        clReleaseCommandQueue(s->q);
    if (s->ctx)
        clReleaseContext(s->ctx);
}

static int setup(cl_device_id dev, peak_setup *s, int verbose)
{
    cl_int err;
    s->ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    if (!s->ctx)
        return fprintf(stderr, "cl_peak: clCreateContext failed (%d)\n", err), 1;
    s->q = clCreateCommandQueue(s->ctx, dev, 0, &err);
    if (!s->q)
        return fprintf(stderr, "cl_peak: clCreateCommandQueue failed (%d)\n", err), 1;
    s->prog = clCreateProgramWithSource(s->ctx, 1, &kernel_src, NULL, &err);
    if (!s->prog)
        return fprintf(stderr, "cl_peak: clCreateProgramWithSource failed (%d)\n", err), 1;
    cl_uint native = 0;
    clGetDeviceInfo(dev, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof native, &native, NULL);
    s->vw = native >= 16 ? 16 : native >= 8 ? 8 : 4;
    char opts[32];
    snprintf(opts, sizeof opts, "-DVW=%d", s->vw);
    if (clBuildProgram(s->prog, 1, &dev, opts, NULL, NULL) != CL_SUCCESS) {
        char log[4096] = "";
        clGetProgramBuildInfo(s->prog, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
        return fprintf(stderr, "cl_peak: kernel build failed:\n%s\n", log), 1;
    }
    s->k = clCreateKernel(s->prog, "peak", &err);
    if (!s->k)
        return fprintf(stderr, "cl_peak: clCreateKernel failed (%d)\n", err), 1;
    cl_uint cus = 1;
    cl_device_type type = 0;
    size_t maxwg = 1, kwg = 1;
    clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof maxwg, &maxwg, NULL);
    if (clGetKernelWorkGroupInfo(s->k, dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg, NULL) == CL_SUCCESS &&
        kwg < maxwg)
        maxwg = kwg;
    /* GPU: 256-wide groups, 32 per compute unit (a few resident at a time, so ~10 waves and a small tail).
     * CPU-like devices: one work-group is one thread's loop over its work-items; 16 groups per core. */
    int gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
    s->local = gpu ? 256 : 16;
    while (s->local > maxwg)
        s->local /= 2;
    if (s->local == 0)
        s->local = 1;
    s->global = s->local * (size_t)cus * (gpu ? 32 : 16);
    s->out = clCreateBuffer(s->ctx, CL_MEM_WRITE_ONLY, s->global * sizeof(float), NULL, &err);
    if (!s->out)
        return fprintf(stderr, "cl_peak: clCreateBuffer failed (%d)\n", err), 1;
    if (verbose) {
        char name[256] = "";
        cl_uint mhz = 0;
        clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name - 1, name, NULL);
        clGetDeviceInfo(dev, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof mhz, &mhz, NULL);
        fprintf(stderr, "cl_peak: %s (%s), %u compute units, %u MHz; %zu work-items in groups of %zu, %d float%d "
                        "chains each\n", name, gpu ? "GPU" : "not a GPU", cus, mhz, s->global, s->local, CHAINS, s->vw);
    }
    return 0;
}

/* One run of `iters` loop trips: seconds, or a negative value on failure. */
static double run(peak_setup *s, int iters)
{
    float av = 0.999999f, bv = 1e-6f;
    cl_int err = clSetKernelArg(s->k, 0, sizeof s->out, &s->out);
    err |= clSetKernelArg(s->k, 1, sizeof av, &av);
    err |= clSetKernelArg(s->k, 2, sizeof bv, &bv);
    err |= clSetKernelArg(s->k, 3, sizeof iters, &iters);
    if (err != CL_SUCCESS)
        return -1;
    double t0 = seconds();
    if (clEnqueueNDRangeKernel(s->q, s->k, 1, NULL, &s->global, &s->local, 0, NULL, NULL) != CL_SUCCESS ||
        clFinish(s->q) != CL_SUCCESS)
        return -1;
    return seconds() - t0;
}

int main(int argc, char **argv)
{
    const char *spec = NULL;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc)
            spec = argv[++i];
        else if (!strcmp(argv[i], "-v"))
            verbose = 1;
        else {
            spec = NULL;
            break;
        }
    }
    if (!spec) {
        fprintf(stderr, "usage: cl_peak --device opencl:P:D [-v]\n");
        return 2;
    }
    cl_device_id dev = find_device(spec);
    if (!dev)
        return 1;
    peak_setup s = {0};
    int rc = 1;
    if (setup(dev, &s, verbose))
        goto done;
    /* Scale the work until one run takes TARGET_S (the first short runs also absorb the driver's lazy set-up). */
    int iters = 16;
    double t = run(&s, iters);
    if (t >= 0)
        t = run(&s, iters);
    while (t >= 0 && t < TARGET_S / 4 && iters < (1 << 24)) {
        iters = t < TARGET_S / 64 ? iters * 16 : (int)(iters * (TARGET_S / t));
        t = run(&s, iters);
    }
    if (t < 0) {
        fprintf(stderr, "cl_peak: kernel run failed\n");
        goto done;
    }
    double best = 0;
    for (int r = 0; r < RUNS; r++) {
        t = run(&s, iters);
        if (t <= 0) {
            fprintf(stderr, "cl_peak: kernel run failed\n");
            goto done;
        }
        double g = FLOP_PER_TRIP(s.vw) * iters * (double)s.global / t / 1e9;
        if (verbose)
            fprintf(stderr, "cl_peak: run %d: %d trips, %.4f s, %.1f GFLOP/s\n", r + 1, iters, t, g);
        if (g > best)
            best = g;
    }
    printf("%.1f\n", best);
    rc = 0;
done:
    release(&s);
    return rc;
}
