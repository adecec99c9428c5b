/* The tiled filter-gradient kernel of the OpenCL backend (cl/tiled/conv_filter_tiled.cl, issue 10) for a spread of
 * tile parameters (VXM_OPENCL_FILTER_TILE) on every OpenCL device (PoCL, rusticl with RUSTICL_ENABLE=llvmpipe):
 *   (a) bitwise equal (memcmp) to the direct kernel (VXM_OPENCL_FILTER_TILE=direct) on the same device -- the
 *       contract of notes/tiles_contract.md: same chunks, one fma(x, dy, acc) chain per chunk in voxel order;
 *   (b) within the tolerance of tests/test_grad_nn_cl.c of the CPU backend's conv_backward_filter: normalised MSE
 *       <= 1e-10 and max |a - b| <= 1e-5 (1 + max |ref|);
 *   (c) a central difference of L(w) = <r, conv(x, w)> on the device (linear in w: exact up to float32 rounding,
 *       tolerance as tests/test_grad_ops.c: |fd - an| <= 1e-2 max(|an|, RMS of an)) for one small 2-D case.
 * Cases: 3-D and 2-D, Cin 1 to 64, Cout 2 to 32 (tails of every tile), kernels 3x3x3, 1x3x3, 1x1x1, strides 1 and 2,
 * and a 460800-voxel volume (256 chunks of 1800 voxels: on rusticl each chunk takes several launches that resume the
 * partial sums).  A variant the device cannot run (work-group size, local memory) is SKIPped.
 * One PASS line per (variant, device) and check; VXM_TEST_VERBOSE=1 prints the CPU-agreement numbers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_opencl/cl_conv_filter_tiled.h"
#include "backend_opencl/cl_internal.h"
#include "backend_opencl/cl_tile.h"
#include "test_backends.h"
#include "test_util.h"

/* The last five have work-groups of at most 32, the most rusticl's llvmpipe reports for a kernel
 * (CL_KERNEL_WORK_GROUP_SIZE), so that device runs them too: tm and tn not powers of two, 8 x 4 results per
 * work-item, fewer work-items than rows (32x16x8x8x4), tk not a multiple of the loading groups (8x8x6x1x2).  With
 * the 460800-voxel case, 32x16x8x4x4 and 32x16x8x8x4 take several launches per chunk there. */
static const char *const variants[] = {"32x16x8x4x4",  "64x32x16x4x4", "64x16x32x4x2", "128x32x8x8x4",
                                       "16x8x4x2x2",   "27x16x16x3x4", "64x64x16x4x4", "96x32x32x8x4",
                                       "128x64x8x8x8", "24x12x8x3x3",  "32x16x8x8x4",  "16x16x16x4x2",
                                       "8x8x6x1x2"};
#define NVAR (int)(sizeof variants / sizeof variants[0])

typedef struct fcase {
    int x[3], cin, cout, k[3], s[3];
} fcase;

#define S3(a, b, c) {a, b, c}
static const fcase cases[] = {
    {S3(10, 9, 11), 3, 16, S3(3, 3, 3), S3(1, 1, 1)},
    {S3(14, 12, 13), 16, 20, S3(3, 3, 3), S3(2, 2, 2)},
    {S3(7, 8, 9), 33, 3, S3(3, 3, 3), S3(1, 1, 1)},
    {S3(6, 7, 8), 64, 32, S3(1, 1, 1), S3(1, 1, 1)},
    {S3(9, 8, 10), 2, 2, S3(3, 3, 3), S3(2, 2, 2)},
    {S3(1, 40, 36), 2, 32, S3(1, 3, 3), S3(1, 2, 2)},
    {S3(1, 33, 30), 1, 3, S3(1, 3, 3), S3(1, 1, 1)},
    {S3(1, 30, 28), 16, 16, S3(1, 1, 1), S3(1, 2, 2)},
    {S3(1, 720, 640), 1, 2, S3(1, 3, 3), S3(1, 1, 1)}, /* many long chunks: the rusticl split */
};
#define NCASE (int)(sizeof cases / sizeof cases[0])

/* the finite-difference case: small 2-D, stride 1 or 2 by variant */
#define FD_NCOORD 12
#define FD_H 1e-2f
#define FD_TOL 1e-2

typedef struct problem {
    int dysh[3];
    vxm_conv_params p;
    size_t nx, ndy, nw;
    float *x, *dy;
} problem;

static void setup(problem *pb, const fcase *c, unsigned long long seed)
{
    memset(pb, 0, sizeof *pb);
    for (int d = 0; d < 3; d++) {
        pb->p.ksize[d] = c->k[d];
        pb->p.stride[d] = c->s[d];
        vxm_same_padding(c->x[d], c->k[d], c->s[d], &pb->dysh[d], &pb->p.pad_lo[d]);
    }
    pb->nx = (size_t)c->x[0] * c->x[1] * c->x[2] * c->cin;
    pb->ndy = (size_t)pb->dysh[0] * pb->dysh[1] * pb->dysh[2] * c->cout;
    pb->nw = (size_t)c->k[0] * c->k[1] * c->k[2] * c->cin * c->cout;
    pb->x = malloc(pb->nx * sizeof(float));
    pb->dy = malloc(pb->ndy * sizeof(float));
    for (size_t i = 0; pb->x && i < pb->nx; i++)
        pb->x[i] = (float)tu_urand(&seed, -1, 1);
    for (size_t i = 0; pb->dy && i < pb->ndy; i++)
        pb->dy[i] = (float)tu_urand(&seed, -1, 1);
}

static void problem_free(problem *pb)
{
    free(pb->x);
    free(pb->dy);
}

/* dw = conv_backward_filter(x, dy) on be; VXM_OK or the failure (message in ctx). */
static vxm_status run_filter(vxm_backend *be, const fcase *c, const problem *pb, float *dw)
{
    vxm_tensor x = {0}, dy = {0}, w = {0};
    int one[3] = {1, 1, 1};
    vxm_status st;
    if (!(st = vxm_tensor_alloc(be, c->x, c->cin, &x)) && !(st = vxm_tensor_alloc(be, pb->dysh, c->cout, &dy)) &&
        !(st = vxm_tensor_alloc(be, one, (int)pb->nw, &w)) && !(st = vxm_tensor_upload(be, &x, pb->x)) &&
        !(st = vxm_tensor_upload(be, &dy, pb->dy)) && !(st = be->ops->conv_backward_filter(be, &x, &dy, &pb->p, w.buf)))
        st = vxm_tensor_download(be, &w, dw);
    vxm_tensor_release(be, &x);
    vxm_tensor_release(be, &dy);
    vxm_tensor_release(be, &w);
    return st;
}

/* Agreement with the CPU reference (tests/test_grad_nn_cl.c); describes a miss in why. */
static int agrees(const float *a, const float *ref, size_t n, char *why, size_t wn)
{
    double num = 0, den = 0, md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (!(fabs(d) <= md))
            md = fabs(d);
        if (fabs((double)ref[i]) > mr)
            mr = fabs((double)ref[i]);
    }
    double nmse = den > 0 ? num / den : num;
    snprintf(why, wn, "nmse %.3g, max |diff| %.3g (max |ref| %.3g)", nmse, md, mr);
    return nmse <= 1e-10 && md <= 1e-5 * (1 + mr);
}

/* Opens device d with VXM_OPENCL_FILTER_TILE = tile. */
static vxm_backend *open_with(vxm_context *ctx, const vxm_opencl_device_info *d, const char *tile)
{
    vxm_backend *be = NULL;
    setenv("VXM_OPENCL_FILTER_TILE", tile, 1);
    if (vxm_backend_opencl_create(ctx, d->platform, d->device, &be) != VXM_OK) {
        tu_report(0, "open opencl device", "%s", vxm_context_error(ctx));
        be = NULL;
    }
    unsetenv("VXM_OPENCL_FILTER_TILE");
    return be;
}

/* Whether the tiled kernel itself runs on be with tile t (not the direct fallback): a tiny problem through
 * vxm_cl_conv_filter_tiled, which reports whether it ran. */
static int tiled_runs(vxm_backend *be, const vxm_cl_tile *t, char *why, size_t wn)
{
    static const fcase c = {S3(1, 5, 4), 2, 3, S3(1, 3, 3), S3(1, 1, 1)};
    problem pb;
    setup(&pb, &c, 1);
    vxm_tensor x = {0}, dy = {0};
    int done = 0;
    cl_mem part;
    vxm_status st;
    if (!(st = vxm_tensor_alloc(be, c.x, c.cin, &x)) && !(st = vxm_tensor_alloc(be, pb.dysh, c.cout, &dy)) &&
        !(st = vxm_tensor_upload(be, &x, pb.x)) && !(st = vxm_tensor_upload(be, &dy, pb.dy)) &&
        !(st = vxm_cl_scratch(be, VXM_SCRATCH_CONV_BWD_DY, pb.nw, &part)))
        st = vxm_cl_conv_filter_tiled(be, t, &x, &dy, &pb.p, part, 64, 1, &done);
    if (!st)
        st = be->ops->finish(be);
    snprintf(why, wn, "%s",
             st ? vxm_context_error(be->ctx)
                : "the built kernel's CL_KERNEL_WORK_GROUP_SIZE (or local memory) is below the tile's");
    vxm_tensor_release(be, &x);
    vxm_tensor_release(be, &dy);
    problem_free(&pb);
    return !st && done;
}

/* L(w) = <r, conv(x, w)> in double. */
static double eval_L(vxm_backend *be, const vxm_tensor *x, vxm_tensor *w, const float *wh, const problem *pb,
                     vxm_tensor *y, float *yh, vxm_status *st)
{
    double L = 0;
    if (!*st && !(*st = vxm_tensor_upload(be, w, wh)) && !(*st = be->ops->conv(be, x, w->buf, NULL, &pb->p, y)) &&
        !(*st = vxm_tensor_download(be, y, yh)))
        for (size_t i = 0; i < pb->ndy; i++)
            L += (double)pb->dy[i] * (double)yh[i];
    return L;
}

/* Finite-difference check of the filter gradient on be (its tile set by the caller); worst ratio into *worst. */
static vxm_status fd_check(vxm_backend *be, int stride, double *worst, char *where, size_t wn)
{
    const fcase c = {S3(1, 9, 8), 3, 5, S3(1, 3, 3), S3(1, stride, stride)};
    problem pb;
    unsigned long long seed = 0xfdull + (unsigned long long)stride;
    setup(&pb, &c, seed);
    float *an = malloc(pb.nw * sizeof(float)), *wh = malloc(pb.nw * sizeof(float));
    float *yh = malloc(pb.ndy * sizeof(float));
    vxm_tensor x = {0}, w = {0}, y = {0};
    int one[3] = {1, 1, 1};
    vxm_status st = an && wh && yh ? run_filter(be, &c, &pb, an) : VXM_ENOMEM;
    if (!st && !(st = vxm_tensor_alloc(be, c.x, c.cin, &x)) && !(st = vxm_tensor_alloc(be, one, (int)pb.nw, &w)) &&
        !(st = vxm_tensor_alloc(be, pb.dysh, c.cout, &y)))
        st = vxm_tensor_upload(be, &x, pb.x);
    double ss = 0;
    for (size_t i = 0; i < pb.nw && !st; i++) {
        wh[i] = (float)tu_urand(&seed, -1, 1);
        ss += (double)an[i] * an[i];
    }
    double scale = sqrt(ss / (double)pb.nw);
    *worst = 0;
    for (int t = 0; t < FD_NCOORD && !st; t++) {
        size_t i = (size_t)tu_urand(&seed, 0, (double)pb.nw);
        float v = wh[i], wp = v + FD_H, wm = v - FD_H;
        wh[i] = wp;
        double Lp = eval_L(be, &x, &w, wh, &pb, &y, yh, &st);
        wh[i] = wm;
        double Lm = eval_L(be, &x, &w, wh, &pb, &y, yh, &st);
        wh[i] = v;
        double fd = (Lp - Lm) / ((double)wp - (double)wm);
        double ratio = fabs(fd - an[i]) / fmax(fmax(fabs(an[i]), scale), 1e-30);
        if (!(ratio <= *worst)) {
            *worst = ratio;
            snprintf(where, wn, "w[%zu]: analytic %.7g fd %.7g (scale %.3g, ratio %.2e)", i, (double)an[i], fd,
                     scale, ratio);
        }
    }
    vxm_tensor_release(be, &x);
    vxm_tensor_release(be, &w);
    vxm_tensor_release(be, &y);
    free(an);
    free(wh);
    free(yh);
    problem_free(&pb);
    return st;
}

/* Every variant against the direct kernel, the CPU and finite differences on device d. */
static void test_device(vxm_context *ctx, const vxm_opencl_device_info *d, problem *pb, float *const *cpu,
                        int verbose)
{
    char dev[64];
    snprintf(dev, sizeof dev, "%.20s/%.30s", d->platform_name, d->device_name);
    float *direct[NCASE] = {0}, *got = NULL;
    size_t maxw = 0;
    for (int ci = 0; ci < NCASE; ci++)
        maxw = pb[ci].nw > maxw ? pb[ci].nw : maxw;
    vxm_backend *be = open_with(ctx, d, "direct");
    if (!be)
        return;
    int ok = 1;
    char why[256] = "";
    for (int ci = 0; ci < NCASE && ok; ci++) {
        direct[ci] = malloc(pb[ci].nw * sizeof(float));
        if (run_filter(be, &cases[ci], &pb[ci], direct[ci])) {
            snprintf(why, sizeof why, "case %d: %s", ci, vxm_context_error(ctx));
            ok = 0;
        } else if (!agrees(direct[ci], cpu[ci], pb[ci].nw, why, sizeof why)) {
            ok = 0;
        }
    }
    char name[200];
    snprintf(name, sizeof name, "filter gradient direct vs cpu [%s]", dev);
    tu_report(ok, name, "%s", why);
    vxm_backend_close(be);
    got = malloc(maxw * sizeof(float));
    for (int v = 0; v < NVAR && ok && got; v++) {
        vxm_cl_tile t;
        vxm_cl_tile_parse(variants[v], &t);
        snprintf(name, sizeof name, "filter tile %s [%s]", variants[v], dev);
        if (!(be = open_with(ctx, d, variants[v])))
            continue;
        vxm_cl *cl = vxm_cl_of(be);
        if (memcmp(&cl->tile[VXM_TILE_FILTER][VXM_TILE_COUT16], &t, sizeof t) != 0) {
            tu_skip(name, "does not fit the device (work-group size / local memory)");
            vxm_backend_close(be);
            continue;
        }
        if (!tiled_runs(be, &t, why, sizeof why)) {
            tu_skip(name, why);
            vxm_backend_close(be);
            continue;
        }
        int eq = 1, near = 1;
        char ewhy[320] = "", nwhy[320] = "";
        for (int ci = 0; ci < NCASE; ci++) {
            const fcase *c = &cases[ci];
            char tag[96];
            snprintf(tag, sizeof tag, "case %d (%dx%dx%d cin %d cout %d k %dx%dx%d s %d%d%d)", ci, c->x[0], c->x[1],
                     c->x[2], c->cin, c->cout, c->k[0], c->k[1], c->k[2], c->s[0], c->s[1], c->s[2]);
            if (run_filter(be, c, &pb[ci], got)) {
                snprintf(ewhy, sizeof ewhy, "%s: %s", tag, vxm_context_error(ctx));
                eq = near = 0;
                break;
            }
            if (eq && memcmp(got, direct[ci], pb[ci].nw * sizeof(float)) != 0) {
                size_t i = 0;
                while (i < pb[ci].nw && memcmp(&got[i], &direct[ci][i], sizeof(float)) == 0)
                    i++;
                snprintf(ewhy, sizeof ewhy, "%s: dw[%zu] = %.9g, direct %.9g", tag, i, (double)got[i],
                         (double)direct[ci][i]);
                eq = 0;
            }
            char w[160];
            int a = agrees(got, cpu[ci], pb[ci].nw, w, sizeof w);
            if (verbose)
                printf("  %s %s: %s\n", variants[v], tag, w);
            if (!a && near) {
                snprintf(nwhy, sizeof nwhy, "%s: %s", tag, w);
                near = 0;
            }
        }
        char n2[240];
        snprintf(n2, sizeof n2, "%s bitwise = direct", name);
        tu_report(eq, n2, "%s", ewhy);
        snprintf(n2, sizeof n2, "%s agrees with cpu", name);
        tu_report(near, n2, "%s", nwhy[0] ? nwhy : ewhy);
        double worst = 0;
        char where[200] = "";
        vxm_status st = fd_check(be, 1 + v % 2, &worst, where, sizeof where);
        snprintf(n2, sizeof n2, "%s finite differences (2-D, stride %d)", name, 1 + v % 2);
        if (st)
            tu_report(0, n2, "%s", vxm_context_error(ctx));
        else
            tu_report(worst <= FD_TOL, n2, "%s", where);
        if (verbose)
            printf("  fd worst: %s\n", where);
        vxm_backend_close(be);
    }
    free(got);
    for (int ci = 0; ci < NCASE; ci++)
        free(direct[ci]);
}

int main(void)
{
    setenv("RUSTICL_ENABLE", getenv("RUSTICL_ENABLE") ? getenv("RUSTICL_ENABLE") : "llvmpipe", 1);
    int verbose = getenv("VXM_TEST_VERBOSE") && atoi(getenv("VXM_TEST_VERBOSE")) > 0;
    vxm_context *ctx = vxm_context_create();
    vxm_backend *cpu_be = NULL;
    if (vxm_backend_cpu_create(ctx, &cpu_be) != VXM_OK) {
        tu_report(0, "open cpu backend", "%s", vxm_context_error(ctx));
        vxm_context_free(ctx);
        return tu_exit_code();
    }
    problem pb[NCASE];
    float *cpu[NCASE];
    int ok = 1;
    for (int ci = 0; ci < NCASE; ci++) {
        setup(&pb[ci], &cases[ci], 0xf11e0000ull + (unsigned long long)ci * 977u);
        cpu[ci] = malloc(pb[ci].nw * sizeof(float));
        if (!cpu[ci] || !pb[ci].x || !pb[ci].dy || run_filter(cpu_be, &cases[ci], &pb[ci], cpu[ci])) {
            tu_report(0, "cpu reference", "case %d: %s", ci, vxm_context_error(ctx));
            ok = 0;
        }
    }
    vxm_backend_close(cpu_be);
    vxm_opencl_device_info info[TB_MAX];
    int nd = ok ? vxm_opencl_enumerate(ctx, info, TB_MAX) : 0;
    if (ok && nd == 0)
        tu_skip("filter tiles", "no OpenCL device");
    for (int i = 0; i < nd; i++)
        test_device(ctx, &info[i], pb, cpu, verbose);
    for (int ci = 0; ci < NCASE; ci++) {
        problem_free(&pb[ci]);
        free(cpu[ci]);
    }
    vxm_context_free(ctx);
    return tu_exit_code();
}
