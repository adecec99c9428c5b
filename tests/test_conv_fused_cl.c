/* The fused OpenCL convolutions conv_pool and conv_upcat (backend.h; cl_conv_fused.c, issue 10) on every OpenCL
 * device (PoCL, Mesa rusticl with RUSTICL_ENABLE=llvmpipe, GPUs), for the direct kernel and three tiles
 * (VXM_OPENCL_CONV_TILE set before the backend opens; a tile the device cannot run prints a SKIP line):
 *   - the fused op equals the unfused op sequence on the same backend bit for bit (memcmp): conv -> maxpool,
 *     upsample_nearest -> concat -> conv;
 *   - it agrees with the CPU backend's fused op within test_ops_agree.c's tolerance (nmse <= 1e-10, max abs diff
 *     <= 1e-5 (1 + max |ref|)).
 * Cases: 3-D and 2-D, odd sizes ('valid' pooling drops trailing planes, rows and voxels), f 2x2x2 and 1x2x2, Ca and
 * Cskip 1..44, Cout 2..48 (tails of every channel block), LeakyReLU on and off, with and without bias, strides 1
 * and 2; conv_pool 32 -> 48 at 3x3x3 exceeds rusticl's loop budget in one pooled launch (slab path there), conv_upcat
 * 20 + 44 -> 32 is cut into input-channel ranges on rusticl with a range straddling Ca, and two 1x1x1 layers of
 * 16400 inputs into ranges on every device (the pooled launch runs them all in order).  Every output must be
 * written (the outputs start as junk). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_backends.h"
#include "test_tiles.h"
#include "test_util.h"

#define JUNK 1234.5f

static const char *const tiles[] = {"direct", "32x16x8x4x4", "16x8x4x2x2", "32x32x27x4x8"};
#define NTILES ((int)(sizeof tiles / sizeof tiles[0]))

/* conv_pool: x of shape/ca channels; conv_upcat: a of shape/ca channels upsampled by f, skip of cs channels. */
typedef struct fcase {
    int upcat, shape[3], ca, cs, cout, k[3], s[3], f[3], leaky, bias;
} fcase;

#define S3(a, b, c) {a, b, c}
static const fcase cases[] = {
    {0, S3(7, 9, 11), 2, 0, 16, S3(3, 3, 3), S3(1, 1, 1), S3(2, 2, 2), 1, 1},
    {0, S3(6, 5, 8), 1, 0, 3, S3(3, 3, 3), S3(1, 1, 1), S3(2, 2, 2), 0, 0},
    {0, S3(1, 13, 11), 3, 0, 20, S3(1, 3, 3), S3(1, 1, 1), S3(1, 2, 2), 1, 1},
    {0, S3(5, 6, 7), 32, 0, 48, S3(3, 3, 3), S3(1, 1, 1), S3(2, 2, 2), 1, 1},
    {0, S3(1, 10, 9), 16, 0, 2, S3(1, 3, 3), S3(1, 1, 1), S3(1, 2, 2), 0, 1},
    {0, S3(9, 8, 10), 4, 0, 8, S3(3, 3, 3), S3(2, 2, 2), S3(2, 2, 2), 1, 1},
    {0, S3(4, 7, 9), 5, 0, 33, S3(1, 1, 1), S3(1, 1, 1), S3(2, 2, 2), 1, 1},
    {1, S3(3, 4, 5), 32, 32, 16, S3(3, 3, 3), S3(1, 1, 1), S3(2, 2, 2), 1, 1},
    {1, S3(1, 5, 6), 1, 2, 3, S3(1, 3, 3), S3(1, 1, 1), S3(1, 2, 2), 0, 1},
    {1, S3(2, 3, 4), 16, 8, 48, S3(3, 3, 3), S3(2, 2, 2), S3(2, 2, 2), 1, 1},
    {1, S3(1, 7, 5), 7, 32, 2, S3(1, 3, 3), S3(1, 2, 2), S3(1, 2, 2), 0, 0},
    {1, S3(3, 3, 3), 20, 44, 32, S3(3, 3, 3), S3(1, 1, 1), S3(2, 2, 2), 1, 1},
    {1, S3(3, 5, 4), 5, 3, 8, S3(3, 3, 3), S3(1, 1, 1), S3(2, 2, 2), 1, 1},
    {1, S3(2, 3, 3), 4, 4, 5, S3(1, 1, 1), S3(1, 1, 1), S3(2, 2, 2), 0, 1},
    /* more than 16384 products: two input-channel ranges everywhere (VXM_CONV_KMAX), many on rusticl */
    {0, S3(1, 2, 5), 16400, 0, 3, S3(1, 1, 1), S3(1, 1, 1), S3(1, 2, 2), 1, 1},
    {1, S3(1, 1, 2), 8000, 8400, 3, S3(1, 1, 1), S3(1, 1, 1), S3(1, 2, 2), 1, 1},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* Host data of a case: the inputs x (a for conv_upcat), skip, weights and bias in one allocation; the conv's input
 * extents n, its grid m and the output's shape. */
enum { IN_X, IN_SKIP, IN_W, IN_B, NIN };
typedef struct fdata {
    float *mem, *in[NIN];
    size_t nin[NIN], ny;
    int n[3], m[3], ysh[3];
    vxm_conv_params p;
} fdata;

static int make_case(const fcase *c, unsigned long long seed, fdata *d)
{
    memset(d, 0, sizeof *d);
    size_t vox[3] = {1, 1, 1}; /* x, skip, y */
    for (int a = 0; a < 3; a++) {
        d->n[a] = c->upcat ? c->shape[a] * c->f[a] : c->shape[a];
        d->p.ksize[a] = c->k[a];
        d->p.stride[a] = c->s[a];
        vxm_same_padding(d->n[a], c->k[a], c->s[a], &d->m[a], &d->p.pad_lo[a]);
        d->ysh[a] = c->upcat ? d->m[a] : d->m[a] / c->f[a];
        vox[0] *= (size_t)c->shape[a];
        vox[1] *= (size_t)d->n[a];
        vox[2] *= (size_t)d->ysh[a];
    }
    d->p.leaky = c->leaky;
    d->p.alpha = 0.2f;
    int taps = c->k[0] * c->k[1] * c->k[2], cin = c->ca + c->cs;
    d->nin[IN_X] = vox[0] * (size_t)c->ca;
    d->nin[IN_SKIP] = vox[1] * (size_t)c->cs;
    d->nin[IN_W] = (size_t)taps * (size_t)cin * (size_t)c->cout;
    d->nin[IN_B] = (size_t)c->cout;
    d->ny = vox[2] * (size_t)c->cout;
    size_t total = 0;
    for (int i = 0; i < NIN; i++)
        total += d->nin[i];
    if (!(d->mem = malloc(total * sizeof(float))))
        return -1;
    double ws = 1.0 / sqrt((double)(taps * cin)), lo[NIN] = {-1, -1, -ws, -0.5};
    for (int i = 0, off = 0; i < NIN; off += (int)d->nin[i], i++) {
        d->in[i] = d->mem + off;
        tt_fill(d->in[i], d->nin[i], &seed, lo[i], -lo[i]);
    }
    return 0;
}

/* The case on backend be, fused (the op) or not (the op sequence), malloc'd into *out. */
static vxm_status run(vxm_backend *be, const fcase *c, const fdata *d, int fused, float **out)
{
    const vxm_backend_ops *o = be->ops;
    vxm_buffer *buf[NIN] = {NULL};
    vxm_tensor y = {{0}, 0, NULL}, t1 = {{0}, 0, NULL}, t2 = {{0}, 0, NULL};
    float *h = malloc(d->ny * sizeof(float));
    *out = NULL;
    vxm_status st = h ? VXM_OK : VXM_ENOMEM;
    for (size_t i = 0; h && i < d->ny; i++)
        h[i] = JUNK; /* every output must be written */
    for (int i = 0; i < NIN && !st; i++)
        if (d->nin[i] && !(st = o->buffer_alloc(be, d->nin[i], &buf[i])))
            st = o->buffer_write(be, buf[i], d->in[i], d->nin[i]);
    vxm_tensor x = {{c->shape[0], c->shape[1], c->shape[2]}, c->ca, buf[IN_X]};
    vxm_tensor skip = {{d->n[0], d->n[1], d->n[2]}, c->cs, buf[IN_SKIP]};
    const vxm_buffer *w = buf[IN_W], *bias = c->bias ? buf[IN_B] : NULL;
    if (!st && !(st = vxm_tensor_alloc(be, d->ysh, c->cout, &y)))
        st = o->buffer_write(be, y.buf, h, d->ny);
    if (!st && fused) {
        st = c->upcat ? o->conv_upcat(be, &x, c->f, &skip, w, bias, &d->p, &y)
                      : o->conv_pool(be, &x, w, bias, &d->p, c->f, &y);
    } else if (!st && c->upcat) { /* upsample -> concat -> conv */
        if (!(st = vxm_tensor_alloc(be, d->n, c->ca, &t1)) && !(st = vxm_tensor_alloc(be, d->n, c->ca + c->cs, &t2)) &&
            !(st = o->upsample_nearest(be, &x, c->f, &t1)) && !(st = o->concat(be, &t1, &skip, &t2)))
            st = o->conv(be, &t2, w, bias, &d->p, &y);
    } else if (!st) { /* conv -> maxpool */
        if (!(st = vxm_tensor_alloc(be, d->m, c->cout, &t1)) && !(st = o->conv(be, &x, w, bias, &d->p, &t1)))
            st = o->maxpool(be, &t1, c->f, &y);
    }
    if (!st)
        st = o->buffer_read(be, y.buf, h, d->ny);
    for (int i = 0; i < NIN; i++)
        if (buf[i])
            o->buffer_free(be, buf[i]);
    vxm_tensor_release(be, &y);
    vxm_tensor_release(be, &t1);
    vxm_tensor_release(be, &t2);
    if (st)
        free(h);
    else
        *out = h;
    return st;
}

static void case_name(const fcase *c, char *buf, size_t n)
{
    if (c->upcat)
        snprintf(buf, n, "conv_upcat %dx%dx%dx%d up %dx%dx%d + skip %d -> %d k%dx%dx%d s%d%s%s", c->shape[0],
                 c->shape[1], c->shape[2], c->ca, c->f[0], c->f[1], c->f[2], c->cs, c->cout, c->k[0], c->k[1],
                 c->k[2], c->s[2], c->leaky ? " leaky" : "", c->bias ? "" : " nobias");
    else
        snprintf(buf, n, "conv_pool %dx%dx%dx%d -> %d k%dx%dx%d s%d pool %dx%dx%d%s%s", c->shape[0], c->shape[1],
                 c->shape[2], c->ca, c->cout, c->k[0], c->k[1], c->k[2], c->s[2], c->f[0], c->f[1], c->f[2],
                 c->leaky ? " leaky" : "", c->bias ? "" : " nobias");
}

/* Every case on one OpenCL backend: fused vs unfused (memcmp) and vs the CPU reference. */
static void check_backend(vxm_context *ctx, vxm_backend *be, const char *tile, fdata *data, float **ref)
{
    char name[320], why[400];
    for (int ci = 0; ci < NCASES; ci++) {
        char cname[200];
        case_name(&cases[ci], cname, sizeof cname);
        snprintf(name, sizeof name, "conv_fused [%s] %s on %s", tile, cname, be->spec);
        float *got = NULL, *seq = NULL;
        if (run(be, &cases[ci], &data[ci], 0, &seq) || run(be, &cases[ci], &data[ci], 1, &got)) {
            tu_report(0, name, "%s", vxm_context_error(ctx));
            vxm_context_clear_error(ctx);
        } else if (tt_tile_refused(ctx, why, sizeof why)) {
            /* the build failing is a bug of the kernel; work-group / resource limits are the device's */
            if (strstr(why, "cannot build"))
                tu_report(0, name, "%s", why);
            else
                printf("SKIP %s: %s\n", name, why);
        } else if (memcmp(got, seq, data[ci].ny * sizeof(float)) != 0) {
            size_t nd = 0, first = 0;
            for (size_t i = data[ci].ny; i-- > 0;)
                if (memcmp(&got[i], &seq[i], sizeof(float)) != 0) {
                    nd++;
                    first = i;
                }
            tu_report(0, name, "%zu of %zu values differ from the unfused ops' (first [%zu]: %.9g vs %.9g)", nd,
                      data[ci].ny, first, got[first], seq[first]);
        } else if (ref[ci] && !tt_agrees(got, ref[ci], data[ci].ny, why, sizeof why)) {
            tu_report(0, name, "%s", why);
        } else {
            tu_report(1, name, "");
        }
        free(got);
        free(seq);
    }
}

/* The cases' data and the CPU backend's fused results (NULL where it failed); 1 when out of memory. */
static int prepare(vxm_context *ctx, vxm_backend *cpu, fdata *data, float **ref)
{
    for (int ci = 0; ci < NCASES; ci++) {
        ref[ci] = NULL;
        if (make_case(&cases[ci], 0xf05e0000ull + (unsigned long long)ci * 977u, &data[ci])) {
            printf("FAIL conv_fused: out of memory\n");
            return 1;
        }
        if (run(cpu, &cases[ci], &data[ci], 1, &ref[ci])) {
            tu_report(0, "conv_fused cpu reference", "%s", vxm_context_error(ctx));
            vxm_context_clear_error(ctx);
        }
    }
    return 0;
}

int main(void)
{
    tt_env env;
    fdata data[NCASES];
    float *ref[NCASES];
    if (tt_setup("conv_fused", &env) || prepare(env.ctx, env.cpu, data, ref))
        return 1;
    vxm_context *ctx = env.ctx;
    for (int dev = 0; dev < env.nd; dev++) {
        for (int ti = 0; ti < NTILES; ti++) {
            vxm_backend *be = tt_open_tile(ctx, &env.info[dev], tiles[ti], "conv_fused");
            if (!be)
                continue;
            if (ti == 0)
                printf("# %s\n", be->desc);
            check_backend(ctx, be, tiles[ti], data, ref);
            vxm_backend_close(be);
        }
    }
    unsetenv("VXM_OPENCL_CONV_TILE");
    for (int ci = 0; ci < NCASES; ci++) {
        free(ref[ci]);
        free(data[ci].mem);
    }
    vxm_backend_close(env.cpu);
    vxm_context_free(ctx);
    return tu_exit_code();
}
