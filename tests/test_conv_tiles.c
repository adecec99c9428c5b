/* The tiled forward convolution (cl/tiled/conv_tiled.cl, issue 10) for a spread of tile parameters on every OpenCL
 * device (PoCL, Mesa rusticl with RUSTICL_ENABLE=llvmpipe, GPUs):
 *   - forward conv and its data gradient (conv_backward_data runs the forward kernel) equal the direct kernel's
 *     (VXM_OPENCL_CONV_TILE=direct) on the same device bit for bit (memcmp): the tiled kernel reproduces the direct
 *     kernel's fma chains (notes/tiles_contract.md);
 *   - both agree with the CPU backend within test_ops_agree.c's tolerance (nmse <= 1e-10, max abs diff <= 1e-5 (1 +
 *     max |ref|));
 *   - the data gradient of one small 2-D strided case matches central differences of <r, conv(x)> (conv is linear
 *     in x, so the difference is exact up to float32 rounding; tolerance as test_grad_ops.c: 1e-2 of the RMS of the
 *     gradient).
 * The cases cover 3-D and 2-D, Cin 1/2/3/16/33/64, Cout 2/3/16/20/32/48, kernels 3x3x3, 1x3x3, 1x1x1, strides 1 and
 * 2, LeakyReLU on and off, and a 64-channel 3x3x3 layer whose reduction is cut into several launches on rusticl
 * (its loop budget: Cout 32 runs as the direct kernel's channel ranges, Cout 16 as k ranges of the tiled kernel's own,
 * which 32x32x27x4x8 needs -- without them it loses 2/3 of that case's sums there).  Mesa rusticl 22.3 reports
 * CL_KERNEL_WORK_GROUP_SIZE 32 for every kernel, so only the tiles of 32 work-items run there.  A tile a device
 * cannot run prints a SKIP line (a variant that fails to build is a FAIL).  Cold: ~40 s (PoCL builds each tile
 * once); with the binary cache ~7 s. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_backends.h"
#include "test_tiles.h"
#include "test_util.h"

#define JUNK 1234.5f

static const char *const tiles[] = {"32x16x8x4x4",   "64x32x16x8x4", "128x32x16x8x4", "64x64x16x4x4",
                                    "16x8x4x2x2",    "128x16x32x8x2", "32x32x27x4x8", "64x16x9x4x1",
                                    "32x64x16x2x8",  "64x16x8x8x4",   "32x32x8x8x4"};
#define NTILES ((int)(sizeof tiles / sizeof tiles[0]))

typedef struct ccase {
    int shape[3], cin, cout, k[3], s[3], leaky, bias, dgrad; /* dgrad: also check conv_backward_data */
} ccase;

#define S3(a, b, c) {a, b, c}
static const ccase cases[] = {
    {S3(7, 5, 9), 1, 16, S3(3, 3, 3), S3(1, 1, 1), 1, 1, 1},
    {S3(7, 5, 9), 2, 2, S3(3, 3, 3), S3(2, 2, 2), 0, 1, 1},
    {S3(6, 5, 7), 3, 3, S3(3, 3, 3), S3(1, 1, 1), 0, 0, 0},
    {S3(8, 6, 10), 16, 32, S3(3, 3, 3), S3(2, 2, 2), 1, 1, 1},
    {S3(5, 4, 6), 33, 48, S3(3, 3, 3), S3(2, 1, 2), 1, 1, 0},
    {S3(1, 13, 11), 33, 20, S3(1, 3, 3), S3(1, 1, 1), 1, 1, 1},
    {S3(1, 12, 10), 64, 48, S3(1, 3, 3), S3(1, 2, 2), 0, 1, 0},
    {S3(1, 9, 7), 16, 3, S3(1, 3, 3), S3(1, 2, 2), 0, 1, 1},
    {S3(4, 5, 6), 16, 20, S3(1, 1, 1), S3(1, 1, 1), 1, 1, 1},
    {S3(3, 4, 9), 64, 32, S3(3, 3, 3), S3(1, 1, 1), 1, 1, 1}, /* 1728 products: channel ranges on rusticl */
    {S3(3, 4, 9), 64, 16, S3(3, 3, 3), S3(1, 1, 1), 1, 1, 0}, /* one range, cut into k ranges on rusticl */
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* Host data of a case: input, weights, bias, dy (for the data gradient), output shape and parameters. */
typedef struct cdata {
    float *x, *w, *b, *dy;
    size_t nx, nw, ny;
    int ysh[3];
    vxm_conv_params p;
} cdata;


static int make_case(const ccase *c, unsigned long long seed, cdata *d)
{
    memset(d, 0, sizeof *d);
    size_t nvx = 1, nvy = 1;
    for (int a = 0; a < 3; a++) {
        d->p.ksize[a] = c->k[a];
        d->p.stride[a] = c->s[a];
        vxm_same_padding(c->shape[a], c->k[a], c->s[a], &d->ysh[a], &d->p.pad_lo[a]);
        nvx *= (size_t)c->shape[a];
        nvy *= (size_t)d->ysh[a];
    }
    d->p.leaky = c->leaky;
    d->p.alpha = 0.2f;
    d->nx = nvx * (size_t)c->cin;
    d->ny = nvy * (size_t)c->cout;
    d->nw = (size_t)c->k[0] * c->k[1] * c->k[2] * c->cin * c->cout;
    d->x = malloc(d->nx * sizeof(float));
    d->w = malloc(d->nw * sizeof(float));
    d->b = malloc((size_t)c->cout * sizeof(float));
    d->dy = malloc(d->ny * sizeof(float));
    if (!d->x || !d->w || !d->b || !d->dy)
        return -1;
    double ws = 1.0 / sqrt((double)(c->k[0] * c->k[1] * c->k[2] * c->cin));
    tt_fill(d->x, d->nx, &seed, -1, 1);
    tt_fill(d->w, d->nw, &seed, -ws, ws);
    tt_fill(d->b, (size_t)c->cout, &seed, -0.5, 0.5);
    tt_fill(d->dy, d->ny, &seed, -1, 1);
    return 0;
}

static void free_case(cdata *d)
{
    free(d->x);
    free(d->w);
    free(d->b);
    free(d->dy);
}

/* Output (dgrad = 0: conv of d->x; 1: conv_backward_data of d->dy) on backend be, malloc'd into *out; `x`
 * replaces d->x when given (finite differences). */
static vxm_status run(vxm_backend *be, const ccase *c, const cdata *d, int dgrad, const float *x, float **out)
{
    const vxm_backend_ops *o = be->ops;
    vxm_tensor in = {{0}, 0, NULL}, res = {{0}, 0, NULL};
    vxm_buffer *wb = NULL, *bb = NULL;
    size_t nin = dgrad ? d->ny : d->nx, nout = dgrad ? d->nx : d->ny;
    float *h = malloc(nout * sizeof(float));
    *out = NULL;
    vxm_status st = h ? VXM_OK : VXM_ENOMEM;
    for (size_t i = 0; h && i < nout; i++)
        h[i] = JUNK; /* every output must be written */
    if (!st)
        st = vxm_tensor_alloc(be, dgrad ? d->ysh : c->shape, dgrad ? c->cout : c->cin, &in);
    if (!st)
        st = vxm_tensor_alloc(be, dgrad ? c->shape : d->ysh, dgrad ? c->cin : c->cout, &res);
    if (!st)
        st = o->buffer_alloc(be, d->nw, &wb);
    if (!st)
        st = o->buffer_alloc(be, (size_t)c->cout, &bb);
    if (!st)
        st = o->buffer_write(be, in.buf, dgrad ? d->dy : (x ? x : d->x), nin);
    if (!st)
        st = o->buffer_write(be, res.buf, h, nout);
    if (!st)
        st = o->buffer_write(be, wb, d->w, d->nw);
    if (!st)
        st = o->buffer_write(be, bb, d->b, (size_t)c->cout);
    if (!st)
        st = dgrad ? o->conv_backward_data(be, &in, wb, &d->p, &res)
                   : o->conv(be, &in, wb, c->bias ? bb : NULL, &d->p, &res);
    if (!st)
        st = o->buffer_read(be, res.buf, h, nout);
    if (wb)
        o->buffer_free(be, wb);
    if (bb)
        o->buffer_free(be, bb);
    vxm_tensor_release(be, &in);
    vxm_tensor_release(be, &res);
    if (st)
        free(h);
    else
        *out = h;
    return st;
}

static void case_name(const ccase *c, int dgrad, char *buf, size_t n)
{
    snprintf(buf, n, "%s %dx%dx%d cin%d cout%d k%dx%dx%d s%dx%dx%d%s", dgrad ? "conv_backward_data" : "conv",
             c->shape[0], c->shape[1], c->shape[2], c->cin, c->cout, c->k[0], c->k[1], c->k[2], c->s[0], c->s[1],
             c->s[2], !dgrad && c->leaky ? " leaky" : "");
}


/* Central differences of L(x) = <r, conv(x)> (r = the case's dy, no bias, no activation) at a spread of input
 * coordinates against the data gradient `an` computed by the same backend. */
static int fd_check(vxm_backend *be, const ccase *c, const cdata *d, const float *an, char *why, size_t wn)
{
    const float h = 1e-2f;
    double scale = 0;
    for (size_t i = 0; i < d->nx; i++)
        scale += (double)an[i] * an[i];
    scale = sqrt(scale / (double)d->nx);
    float *x = malloc(d->nx * sizeof(float));
    if (!x)
        return 0;
    memcpy(x, d->x, d->nx * sizeof(float));
    double worst = 0;
    int ok = 1;
    for (size_t i = 0; i < d->nx && ok; i += d->nx / 12 + 1) {
        double l[2];
        float xi = d->x[i], step[2] = {xi + h, xi - h};
        for (int sgn = 0; sgn < 2 && ok; sgn++) {
            float *y;
            x[i] = step[sgn];
            if (run(be, c, d, 0, x, &y)) {
                ok = 0;
                break;
            }
            l[sgn] = 0;
            for (size_t j = 0; j < d->ny; j++)
                l[sgn] += (double)d->dy[j] * y[j];
            free(y);
        }
        x[i] = xi;
        if (!ok)
            break;
        double fd = (l[0] - l[1]) / ((double)step[0] - (double)step[1]);
        double den = fabs(an[i]) > scale ? fabs(an[i]) : scale;
        double r = fabs(fd - an[i]) / den;
        if (r > worst)
            worst = r;
    }
    free(x);
    snprintf(why, wn, "finite differences: worst |fd - an| / max(|an|, rms) %.3g (<= 1e-2)", worst);
    return ok && worst <= 1e-2;
}


int main(void)
{
    tt_env env;
    if (tt_setup("conv_tiles", &env))
        return 1;
    vxm_context *ctx = env.ctx;
    vxm_backend *cpu = env.cpu;

    cdata data[NCASES];
    float *ref[NCASES][2]; /* CPU results: conv, data gradient */
    memset(ref, 0, sizeof ref);
    for (int ci = 0; ci < NCASES; ci++) {
        if (make_case(&cases[ci], 0x711e0000ull + (unsigned long long)ci * 977u, &data[ci])) {
            printf("FAIL conv_tiles: out of memory\n");
            return 1;
        }
        for (int g = 0; g <= cases[ci].dgrad; g++)
            if (run(cpu, &cases[ci], &data[ci], g, NULL, &ref[ci][g]))
                tu_report(0, "conv_tiles cpu reference", "%s", vxm_context_error(ctx));
    }
    /* The finite-difference case: 2-D, strided, no bias or activation (L is linear in x). */
    const ccase fdc = {S3(1, 7, 6), 3, 4, S3(1, 3, 3), S3(1, 2, 2), 0, 0, 1};
    cdata fdd;
    if (make_case(&fdc, 0xfd000001ull, &fdd)) {
        printf("FAIL conv_tiles: out of memory\n");
        return 1;
    }

    for (int dev = 0; dev < env.nd; dev++) {
        /* The direct kernel's results on this device. */
        vxm_backend *db = tt_open_tile(ctx, &env.info[dev], "direct", "conv_tiles");
        if (!db)
            continue;
        printf("# %s\n", db->desc);
        float *direct[NCASES][2];
        memset(direct, 0, sizeof direct);
        for (int ci = 0; ci < NCASES; ci++)
            for (int g = 0; g <= cases[ci].dgrad; g++)
                if (run(db, &cases[ci], &data[ci], g, NULL, &direct[ci][g])) {
                    tu_report(0, "conv_tiles direct kernel", "%s on %s", vxm_context_error(ctx), db->spec);
                    vxm_context_clear_error(ctx);
                }

        for (int ti = 0; ti < NTILES; ti++) {
            char name[320], why[400];
            vxm_backend *tb = tt_open_tile(ctx, &env.info[dev], tiles[ti], "conv_tiles");
            if (!tb)
                continue;
            int skipped = 0;
            for (int ci = 0; ci < NCASES && !skipped; ci++) {
                for (int g = 0; g <= cases[ci].dgrad && !skipped; g++) {
                    const cdata *d = &data[ci];
                    size_t n = g ? d->nx : d->ny;
                    char cname[160];
                    case_name(&cases[ci], g, cname, sizeof cname);
                    snprintf(name, sizeof name, "conv_tiles [%s] %s on %s", tiles[ti], cname, tb->spec);
                    float *got = NULL;
                    if (run(tb, &cases[ci], d, g, NULL, &got)) {
                        tu_report(0, name, "%s", vxm_context_error(ctx));
                        vxm_context_clear_error(ctx);
                        continue;
                    }
                    if (tt_tile_refused(ctx, why, sizeof why)) {
                        /* the build failing is a bug of the kernel; work-group / resource limits are the device's */
                        if (strstr(why, "cannot build"))
                            tu_report(0, name, "%s", why);
                        else
                            printf("SKIP %s: %s\n", name, why);
                        skipped = 1;
                    } else if (!direct[ci][g] || memcmp(got, direct[ci][g], n * sizeof(float)) != 0) {
                        size_t nd_ = 0;
                        for (size_t i = 0; direct[ci][g] && i < n; i++)
                            nd_ += memcmp(&got[i], &direct[ci][g][i], sizeof(float)) != 0;
                        tu_report(0, name, "%zu of %zu values differ from the direct kernel's", nd_, n);
                    } else if (ref[ci][g] && !tt_agrees(got, ref[ci][g], n, why, sizeof why)) {
                        tu_report(0, name, "%s", why);
                    } else {
                        tu_report(1, name, "");
                    }
                    free(got);
                }
            }
            if (!skipped) {
                float *an = NULL;
                snprintf(name, sizeof name, "conv_tiles [%s] conv_backward_data finite differences on %s", tiles[ti],
                         tb->spec);
                if (run(tb, &fdc, &fdd, 1, NULL, &an)) {
                    tu_report(0, name, "%s", vxm_context_error(ctx));
                    vxm_context_clear_error(ctx);
                } else {
                    int ok = fd_check(tb, &fdc, &fdd, an, why, sizeof why);
                    tu_report(ok, name, "%s", ok ? "" : (why[0] ? why : vxm_context_error(ctx)));
                    vxm_context_clear_error(ctx);
                }
                free(an);
            }
            vxm_backend_close(tb);
        }
        for (int ci = 0; ci < NCASES; ci++)
            for (int g = 0; g < 2; g++)
                free(direct[ci][g]);
        vxm_backend_close(db);
    }
    unsetenv("VXM_OPENCL_CONV_TILE");
    for (int ci = 0; ci < NCASES; ci++) {
        free(ref[ci][0]);
        free(ref[ci][1]);
        free_case(&data[ci]);
    }
    free_case(&fdd);
    vxm_backend_close(cpu);
    vxm_context_free(ctx);
    return tu_exit_code();
}
