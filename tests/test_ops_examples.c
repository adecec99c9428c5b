/* The worked examples of the semantics spec (../shared/docs/voxelmorph-semantics.md), run through the ops table
 * on every backend (tb_open_all: the CPU backend, then every OpenCL device):
 *   §2.1 SAME convolution test vectors (incl. asymmetric stride-2 padding) along each axis, plus random
 *        convolutions against a double-precision reference; §2.2-§2.5 small hand cases for LeakyReLU, max
 *        pooling, nearest upsampling and concatenation; §4.2 linear sampling; §4.3 fill value; §4.4 nearest
 *        rounding; §4.5 affine identity / translation / scaling; §5 scaling-and-squaring table; §6.4 both
 *        RescaleTransform tables with both resize mappings; §3.3 normal sampling; 2-D variants; error paths.
 * Tolerance: |a - b| <= 1e-5 * max(1, |b|) as the spec suggests (its numbers are float32 results printed to
 * ~8 digits).  The random convolutions, whose float32 sums have no exact answer, use 4e-6 * sum|terms| + 1e-6:
 * float32 accumulation of k terms stays well below that (observed <= 3e-7 * sum|terms|), a wrong tap or
 * padding side changes a result by a whole term (>= 1e-3 * sum|terms| here). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend.h"
/* test_util.h defines helpers (shared-data paths, NMSE) this program does not need */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "test_backends.h"
#include "test_util.h"
#pragma GCC diagnostic pop

static vxm_context *g_ctx;

/* ---- helpers ------------------------------------------------------------------------------------------------ */

static void name_of(char *buf, size_t n, const vxm_backend *be, const char *what)
{
    snprintf(buf, n, "[%s] %s", be->spec, what);
}

static void fail_op(const vxm_backend *be, const char *what, vxm_status st)
{
    char name[512];
    name_of(name, sizeof name, be, what);
    tu_report(0, name, "%s: %s", vxm_status_name(st), vxm_context_error(g_ctx));
}

/* Allocates a tensor and uploads `data` when given. */
static vxm_status mk(vxm_backend *be, int s0, int s1, int s2, int c, const float *data, vxm_tensor *t)
{
    int shape[3] = {s0, s1, s2};
    t->buf = NULL;
    vxm_status st = vxm_tensor_alloc(be, shape, c, t);
    if (st == VXM_OK && data)
        st = vxm_tensor_upload(be, t, data);
    return st;
}

static void rel(vxm_backend *be, vxm_tensor *t)
{
    vxm_tensor_release(be, t);
}

/* Reads t back and compares with want[] under the spec tolerance; one PASS/FAIL line. */
static void expect(vxm_backend *be, const char *what, const vxm_tensor *t, const float *want)
{
    char name[512];
    name_of(name, sizeof name, be, what);
    size_t n = vxm_tensor_numel(t);
    float *got = malloc(n * sizeof(float));
    vxm_status st = got ? vxm_tensor_download(be, t, got) : VXM_ENOMEM;
    if (st != VXM_OK) {
        tu_report(0, name, "download: %s", vxm_context_error(g_ctx));
        free(got);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double b = want[i], tol = 1e-5 * fmax(1.0, fabs(b));
        if (!(fabs((double)got[i] - b) <= tol)) {
            tu_report(0, name, "element %zu: got %.9g, want %.9g", i, (double)got[i], b);
            free(got);
            return;
        }
    }
    tu_report(1, name, "");
    free(got);
}

/* ---- §2.1 convolution --------------------------------------------------------------------------------------- */

/* 1-D signal along `axis` (size 1 elsewhere), one channel, kernel taps [1, 10, 100] along that axis. */
static void conv_vector(vxm_backend *be, int axis, const float *x, int n, int stride, const float *want, int m)
{
    int shape[3] = {1, 1, 1}, k[3] = {1, 1, 1}, s[3] = {1, 1, 1}, out[3], pad[3];
    shape[axis] = n;
    k[axis] = 3;
    s[axis] = stride;
    for (int d = 0; d < 3; d++)
        vxm_same_padding(shape[d], k[d], s[d], &out[d], &pad[d]);
    char what[128];
    snprintf(what, sizeof what, "conv §2.1 n=%d stride %d along axis %d%s", n, stride, axis, axis ? " (2-D)" : "");
    if (out[axis] != m) {
        char name[512];
        name_of(name, sizeof name, be, what);
        tu_report(0, name, "vxm_same_padding gives %d outputs, want %d", out[axis], m);
        return;
    }
    static const float taps[3] = {1, 10, 100};
    static const float zero = 0;
    vxm_tensor tx, ty;
    vxm_buffer *w = NULL, *b = NULL;
    vxm_conv_params p = {{k[0], k[1], k[2]}, {s[0], s[1], s[2]}, {pad[0], pad[1], pad[2]}, 0, 0.2f};
    vxm_status st;
    if ((st = mk(be, shape[0], shape[1], shape[2], 1, x, &tx)) ||
        (st = mk(be, out[0], out[1], out[2], 1, NULL, &ty)) || (st = be->ops->buffer_alloc(be, 3, &w)) ||
        (st = be->ops->buffer_write(be, w, taps, 3)) || (st = be->ops->buffer_alloc(be, 1, &b)) ||
        (st = be->ops->buffer_write(be, b, &zero, 1)) || (st = be->ops->conv(be, &tx, w, b, &p, &ty)))
        fail_op(be, what, st);
    else
        expect(be, what, &ty, want);
    rel(be, &tx);
    rel(be, &ty);
    if (w)
        be->ops->buffer_free(be, w);
    if (b)
        be->ops->buffer_free(be, b);
}

static void test_conv_vectors(vxm_backend *be)
{
    static const float x4[4] = {1, 2, 3, 4}, x5[5] = {1, 2, 3, 4, 5};
    static const float s2n4[2] = {321, 43}, s1n4[4] = {210, 321, 432, 43}, s2n5[3] = {210, 432, 54};
    for (int axis = 0; axis < 3; axis++) {
        conv_vector(be, axis, x4, 4, 2, s2n4, 2);
        conv_vector(be, axis, x4, 4, 1, s1n4, 4);
        conv_vector(be, axis, x5, 5, 2, s2n5, 3);
    }
}

static uint64_t rng = 0x1234567887654321ull;

static float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f; /* [-1, 1) */
}

/* Random convolution against a double-precision direct evaluation of the §2.1 formula. */
static void conv_random(vxm_backend *be, int n0, int n1, int n2, int cin, int cout, int k0, int k1, int k2, int s0,
                        int s1, int s2, int leaky)
{
    int n[3] = {n0, n1, n2}, k[3] = {k0, k1, k2}, s[3] = {s0, s1, s2}, m[3], pad[3];
    for (int d = 0; d < 3; d++)
        vxm_same_padding(n[d], k[d], s[d], &m[d], &pad[d]);
    char what[160], name[256];
    snprintf(what, sizeof what, "conv random %dx%dx%d %d->%d kernel %dx%dx%d stride %dx%dx%d%s", n0, n1, n2, cin,
             cout, k0, k1, k2, s0, s1, s2, leaky ? " + leaky" : "");
    name_of(name, sizeof name, be, what);
    size_t nx = (size_t)n0 * n1 * n2 * cin, nw = (size_t)k0 * k1 * k2 * cin * cout;
    size_t ny = (size_t)m[0] * m[1] * m[2] * cout;
    float *hx = malloc(nx * sizeof(float)), *hw = malloc(nw * sizeof(float)), *hb = malloc(cout * sizeof(float));
    float *hy = malloc(ny * sizeof(float));
    for (size_t i = 0; i < nx; i++)
        hx[i] = frand();
    for (size_t i = 0; i < nw; i++)
        hw[i] = frand();
    for (int i = 0; i < cout; i++)
        hb[i] = frand();
    vxm_tensor tx, ty;
    vxm_buffer *w = NULL, *b = NULL;
    vxm_conv_params p = {{k0, k1, k2}, {s0, s1, s2}, {pad[0], pad[1], pad[2]}, leaky, 0.2f};
    vxm_status st;
    if ((st = mk(be, n0, n1, n2, cin, hx, &tx)) || (st = mk(be, m[0], m[1], m[2], cout, NULL, &ty)) ||
        (st = be->ops->buffer_alloc(be, nw, &w)) || (st = be->ops->buffer_write(be, w, hw, nw)) ||
        (st = be->ops->buffer_alloc(be, (size_t)cout, &b)) || (st = be->ops->buffer_write(be, b, hb, (size_t)cout)) ||
        (st = be->ops->conv(be, &tx, w, b, &p, &ty)) || (st = vxm_tensor_download(be, &ty, hy))) {
        fail_op(be, what, st);
        goto done;
    }
    for (int o0 = 0; o0 < m[0]; o0++)
        for (int o1 = 0; o1 < m[1]; o1++)
            for (int o2 = 0; o2 < m[2]; o2++)
                for (int co = 0; co < cout; co++) {
                    double acc = hb[co], mag = fabs(hb[co]);
                    for (int a = 0; a < k0; a++)
                        for (int bb = 0; bb < k1; bb++)
                            for (int c = 0; c < k2; c++) {
                                int i0 = o0 * s0 - pad[0] + a, i1 = o1 * s1 - pad[1] + bb, i2 = o2 * s2 - pad[2] + c;
                                if (i0 < 0 || i1 < 0 || i2 < 0 || i0 >= n0 || i1 >= n1 || i2 >= n2)
                                    continue;
                                const float *xv = hx + (((size_t)i0 * n1 + i1) * n2 + i2) * cin;
                                const float *wv = hw + (((size_t)a * k1 + bb) * k2 + c) * cin * cout + co;
                                for (int ci = 0; ci < cin; ci++) {
                                    double t = (double)xv[ci] * wv[(size_t)ci * cout];
                                    acc += t;
                                    mag += fabs(t);
                                }
                            }
                    if (leaky && !(acc > 0)) {
                        acc *= 0.2;
                        mag *= 0.2;
                    }
                    size_t o = (((size_t)o0 * m[1] + o1) * m[2] + o2) * cout + co;
                    if (!(fabs(hy[o] - acc) <= 4e-6 * mag + 1e-6)) {
                        tu_report(0, name, "output (%d,%d,%d,%d): got %.9g, want %.9g", o0, o1, o2, co,
                                  (double)hy[o], acc);
                        goto done;
                    }
                }
    tu_report(1, name, "");
done:
    rel(be, &tx);
    rel(be, &ty);
    if (w)
        be->ops->buffer_free(be, w);
    if (b)
        be->ops->buffer_free(be, b);
    free(hx);
    free(hw);
    free(hb);
    free(hy);
}

static void test_conv_random(vxm_backend *be)
{
    conv_random(be, 5, 6, 7, 2, 16, 3, 3, 3, 1, 1, 1, 1);
    conv_random(be, 6, 8, 10, 16, 32, 3, 3, 3, 2, 2, 2, 1);  /* even sizes: 0 before, 1 after */
    conv_random(be, 7, 9, 11, 16, 32, 3, 3, 3, 2, 2, 2, 0);  /* odd sizes: 1 and 1 */
    conv_random(be, 4, 5, 37, 16, 3, 3, 3, 3, 1, 1, 1, 0);   /* flow-like Cout 3 */
    conv_random(be, 1, 12, 21, 16, 2, 1, 3, 3, 1, 1, 1, 1);  /* 2-D flow-like Cout 2 */
    conv_random(be, 5, 6, 19, 32, 4, 3, 3, 3, 2, 2, 2, 1);   /* narrow output, stride 2 */
    conv_random(be, 4, 5, 9, 48, 1, 3, 3, 3, 1, 1, 1, 0);
    conv_random(be, 3, 4, 33, 64, 32, 3, 3, 3, 1, 1, 1, 1);
    conv_random(be, 3, 4, 29, 5, 80, 3, 3, 3, 1, 2, 1, 1);   /* Cout > one register block */
    conv_random(be, 1, 17, 19, 3, 8, 1, 3, 3, 1, 1, 1, 1);   /* 2-D */
    conv_random(be, 1, 16, 20, 34, 16, 1, 3, 3, 1, 2, 2, 0); /* 2-D stride 2 */
    conv_random(be, 6, 5, 23, 4, 20, 5, 1, 5, 2, 1, 3, 0);   /* generic kernel and stride */
    conv_random(be, 2, 2, 2, 2, 5, 7, 7, 7, 1, 1, 1, 0);     /* kernel larger than the volume */
}

/* Bitwise equality of a convolution and an integration for 1 and 2 threads (no-op for devices). */
static void test_threads_bitwise(vxm_backend *be)
{
    static const char what[] = "conv and vecint bitwise identical with 1 and 2 threads";
    char name[512];
    name_of(name, sizeof name, be, what);
    int n[3] = {8, 9, 40}, m[3], pad[3];
    for (int d = 0; d < 3; d++)
        vxm_same_padding(n[d], 3, 1, &m[d], &pad[d]);
    size_t nx = (size_t)8 * 9 * 40 * 16, nw = (size_t)27 * 16 * 32, ny = (size_t)8 * 9 * 40 * 32;
    size_t nv = (size_t)8 * 9 * 40 * 3;
    float *hx = malloc(nx * sizeof(float)), *hw = malloc(nw * sizeof(float)), *hv = malloc(nv * sizeof(float));
    float *y1 = malloc(ny * sizeof(float)), *y2 = malloc(ny * sizeof(float));
    float *v1 = malloc(nv * sizeof(float)), *v2 = malloc(nv * sizeof(float));
    for (size_t i = 0; i < nx; i++)
        hx[i] = frand();
    for (size_t i = 0; i < nw; i++)
        hw[i] = frand();
    for (size_t i = 0; i < nv; i++)
        hv[i] = 3.0f * frand();
    vxm_tensor tx, ty, tv, tr;
    tx.buf = ty.buf = tv.buf = tr.buf = NULL;
    vxm_buffer *w = NULL;
    vxm_conv_params p = {{3, 3, 3}, {1, 1, 1}, {pad[0], pad[1], pad[2]}, 1, 0.2f};
    vxm_status st;
    if ((st = mk(be, 8, 9, 40, 16, hx, &tx)) || (st = mk(be, 8, 9, 40, 32, NULL, &ty)) ||
        (st = mk(be, 8, 9, 40, 3, hv, &tv)) || (st = mk(be, 8, 9, 40, 3, NULL, &tr)) ||
        (st = be->ops->buffer_alloc(be, nw, &w)) || (st = be->ops->buffer_write(be, w, hw, nw))) {
        fail_op(be, what, st);
        goto done;
    }
    for (int t = 1; t <= 2; t++) {
        vxm_context_set_threads(g_ctx, t);
        if ((st = be->ops->conv(be, &tx, w, NULL, &p, &ty)) || (st = vxm_tensor_download(be, &ty, t == 1 ? y1 : y2)) ||
            (st = be->ops->vecint(be, &tv, 3, 7, &tr)) || (st = vxm_tensor_download(be, &tr, t == 1 ? v1 : v2))) {
            fail_op(be, what, st);
            goto done;
        }
    }
    tu_report(memcmp(y1, y2, ny * sizeof(float)) == 0 && memcmp(v1, v2, nv * sizeof(float)) == 0, name,
              "results differ between thread counts");
done:
    vxm_context_set_threads(g_ctx, 0); /* back to the default */
    rel(be, &tx);
    rel(be, &ty);
    rel(be, &tv);
    rel(be, &tr);
    if (w)
        be->ops->buffer_free(be, w);
    free(hx);
    free(hw);
    free(hv);
    free(y1);
    free(y2);
    free(v1);
    free(v2);
}

/* ---- §2.2-§2.5 and scale ------------------------------------------------------------------------------------ */

static void test_elementwise(vxm_backend *be)
{
    static const float x[6] = {-2, -0.5f, 0, 1, 3, -0.0f};
    static const float lk[6] = {-0.4f, -0.1f, 0, 1, 3, 0};
    static const float sc[6] = {-5, -1.25f, 0, 2.5f, 7.5f, 0};
    vxm_tensor tx, ty;
    vxm_status st;
    if ((st = mk(be, 1, 2, 3, 1, x, &tx)) || (st = mk(be, 1, 2, 3, 1, NULL, &ty)) ||
        (st = be->ops->leaky_relu(be, &tx, 0.2f, &ty)))
        fail_op(be, "leaky_relu §2.2", st);
    else
        expect(be, "leaky_relu §2.2", &ty, lk);
    if ((st = be->ops->leaky_relu(be, &tx, 0.2f, &tx)))
        fail_op(be, "leaky_relu in place", st);
    else
        expect(be, "leaky_relu in place", &tx, lk);
    if ((st = vxm_tensor_upload(be, &tx, x)) || (st = be->ops->scale(be, &tx, 2.5f, &ty)))
        fail_op(be, "scale", st);
    else
        expect(be, "scale", &ty, sc);
    rel(be, &tx);
    rel(be, &ty);
}

static void test_maxpool(vxm_backend *be)
{
    /* 3-D: 5x4x6 (odd axis 0: the last plane is dropped, 'valid'), 2 channels: v and -v, v = 100i + 10j + k.
     * Max of v over a 2x2x2 block is at its last corner, max of -v at its first. */
    float x[5 * 4 * 6 * 2], want[2 * 2 * 3 * 2];
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 6; k++) {
                float v = (float)(100 * i + 10 * j + k);
                x[((i * 4 + j) * 6 + k) * 2] = v;
                x[((i * 4 + j) * 6 + k) * 2 + 1] = -v;
            }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 3; k++) {
                want[((i * 2 + j) * 3 + k) * 2] = (float)(100 * (2 * i + 1) + 10 * (2 * j + 1) + 2 * k + 1);
                want[((i * 2 + j) * 3 + k) * 2 + 1] = -(float)(100 * (2 * i) + 10 * (2 * j) + 2 * k);
            }
    static const int f3[3] = {2, 2, 2}, f2[3] = {1, 2, 2};
    vxm_tensor tx, ty;
    vxm_status st;
    if ((st = mk(be, 5, 4, 6, 2, x, &tx)) || (st = mk(be, 2, 2, 3, 2, NULL, &ty)) ||
        (st = be->ops->maxpool(be, &tx, f3, &ty)))
        fail_op(be, "maxpool §2.3 3-D", st);
    else
        expect(be, "maxpool §2.3 3-D", &ty, want);
    rel(be, &tx);
    rel(be, &ty);
    /* 2-D: 1x4x5 -> 1x2x2 */
    float x2[20], want2[4];
    for (int i = 0; i < 20; i++)
        x2[i] = (float)((i * 7) % 20);
    for (int j = 0; j < 2; j++)
        for (int k = 0; k < 2; k++) {
            float m = -1;
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++)
                    m = fmaxf(m, x2[(2 * j + a) * 5 + 2 * k + b]);
            want2[j * 2 + k] = m;
        }
    if ((st = mk(be, 1, 4, 5, 1, x2, &tx)) || (st = mk(be, 1, 2, 2, 1, NULL, &ty)) ||
        (st = be->ops->maxpool(be, &tx, f2, &ty)))
        fail_op(be, "maxpool §2.3 2-D", st);
    else
        expect(be, "maxpool §2.3 2-D", &ty, want2);
    rel(be, &tx);
    rel(be, &ty);
}

static void test_upsample_concat(vxm_backend *be)
{
    float x[2 * 3 * 2 * 2], want[4 * 6 * 4 * 2];
    for (int i = 0; i < 24; i++)
        x[i] = (float)i;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 6; j++)
            for (int k = 0; k < 4; k++)
                for (int c = 0; c < 2; c++)
                    want[((i * 6 + j) * 4 + k) * 2 + c] = x[(((i / 2) * 3 + j / 2) * 2 + k / 2) * 2 + c];
    static const int f3[3] = {2, 2, 2}, f2[3] = {1, 2, 2};
    vxm_tensor tx, ty;
    vxm_status st;
    if ((st = mk(be, 2, 3, 2, 2, x, &tx)) || (st = mk(be, 4, 6, 4, 2, NULL, &ty)) ||
        (st = be->ops->upsample_nearest(be, &tx, f3, &ty)))
        fail_op(be, "upsample_nearest §2.4 3-D", st);
    else
        expect(be, "upsample_nearest §2.4 3-D", &ty, want);
    rel(be, &tx);
    rel(be, &ty);
    /* 2-D: 1x2x3 one channel -> 1x4x6 */
    float want2[24];
    for (int j = 0; j < 4; j++)
        for (int k = 0; k < 6; k++)
            want2[j * 6 + k] = x[(j / 2) * 3 + k / 2];
    if ((st = mk(be, 1, 2, 3, 1, x, &tx)) || (st = mk(be, 1, 4, 6, 1, NULL, &ty)) ||
        (st = be->ops->upsample_nearest(be, &tx, f2, &ty)))
        fail_op(be, "upsample_nearest §2.4 2-D", st);
    else
        expect(be, "upsample_nearest §2.4 2-D", &ty, want2);
    rel(be, &tx);
    rel(be, &ty);
    /* concat [a (2 channels), b (1 channel)] on a 2x1x3 grid: a first (§2.5) */
    float a[12], b[6], want3[18];
    for (int v = 0; v < 6; v++) {
        a[2 * v] = (float)v;
        a[2 * v + 1] = 10.0f + v;
        b[v] = 100.0f + v;
        want3[3 * v] = a[2 * v];
        want3[3 * v + 1] = a[2 * v + 1];
        want3[3 * v + 2] = b[v];
    }
    vxm_tensor ta, tb, tc;
    ta.buf = tb.buf = tc.buf = NULL;
    if ((st = mk(be, 2, 1, 3, 2, a, &ta)) || (st = mk(be, 2, 1, 3, 1, b, &tb)) ||
        (st = mk(be, 2, 1, 3, 3, NULL, &tc)) || (st = be->ops->concat(be, &ta, &tb, &tc)))
        fail_op(be, "concat §2.5", st);
    else
        expect(be, "concat §2.5", &tc, want3);
    rel(be, &ta);
    rel(be, &tb);
    rel(be, &tc);
}

/* ---- §4 spatial transformer ------------------------------------------------------------------------------ */

/* Samples a 1-D profile V = [10, 20, 30, 40] (2 channels: V and V/10, constant across the other axes) along
 * spatial axis `axis` at locations p[0..np-1]: the displacement grid has np voxels along that axis, 1 elsewhere,
 * and displacement p[i] - i.  ndim 2 uses a 2-D image (n0 = 1) and axis 1 or 2. */
static void sample_profile(vxm_backend *be, const char *what, int ndim, int axis, const float *p, int np,
                           vxm_interp interp, int use_fill, float fill, const float *want)
{
    int ishape[3] = {ndim == 2 ? 1 : 2, 2, 2}, gshape[3] = {1, 1, 1};
    ishape[axis] = 4;
    gshape[axis] = np;
    float img[4 * 2 * 2 * 2], disp[16 * 3], exp2[16 * 2];
    size_t nvox = (size_t)ishape[0] * ishape[1] * ishape[2];
    for (size_t v = 0; v < nvox; v++) {
        int idx[3] = {(int)(v / ((size_t)ishape[1] * ishape[2])), (int)(v / ishape[2] % ishape[1]),
                      (int)(v % ishape[2])};
        img[2 * v] = 10.0f * (float)(idx[axis] + 1);
        img[2 * v + 1] = (float)(idx[axis] + 1);
    }
    int ch = axis - (3 - ndim);
    for (int i = 0; i < np; i++) {
        for (int c = 0; c < ndim; c++)
            disp[i * ndim + c] = 0;
        disp[i * ndim + ch] = p[i] - (float)i;
        exp2[2 * i] = want[i];
        exp2[2 * i + 1] = want[i] == fill && use_fill ? fill : want[i] / 10.0f;
    }
    vxm_tensor ti, td, ty;
    ti.buf = td.buf = ty.buf = NULL;
    vxm_status st;
    if ((st = mk(be, ishape[0], ishape[1], ishape[2], 2, img, &ti)) ||
        (st = mk(be, gshape[0], gshape[1], gshape[2], ndim, disp, &td)) ||
        (st = mk(be, gshape[0], gshape[1], gshape[2], 2, NULL, &ty)) ||
        (st = be->ops->spatial_transform(be, &ti, &td, ndim, interp, use_fill, fill, &ty)))
        fail_op(be, what, st);
    else
        expect(be, what, &ty, exp2);
    rel(be, &ti);
    rel(be, &td);
    rel(be, &ty);
}

static void test_transform(vxm_backend *be)
{
    static const float p_lin[7] = {-0.5f, 0, 0.5f, 1.5f, 2.5f, 3, 3.25f};
    static const float w_lin[7] = {10, 10, 15, 25, 35, 40, 40};
    static const float p_near[6] = {0.5f, 1.5f, 2.5f, -0.5f, 3.5f, 1.49f};
    static const float w_near[6] = {10, 30, 30, 10, 40, 20};
    static const float p_fill[6] = {-1e-6f, 0, 3, 3.0001f, 1.5f, -0.6f};
    static const float w_fill_lin[6] = {-7, 10, 40, -7, 25, -7};
    static const float w_fill_near[6] = {-7, 10, 40, -7, 30, -7};
    static const float w_nofill_lin[6] = {10, 10, 40, 40, 25, 10};
    char what[128];
    for (int axis = 0; axis < 3; axis++) {
        snprintf(what, sizeof what, "spatial_transform §4.2 linear vector along axis %d", axis);
        sample_profile(be, what, 3, axis, p_lin, 7, VXM_INTERP_LINEAR, 0, 0, w_lin);
        snprintf(what, sizeof what, "spatial_transform §4.4 nearest half-to-even along axis %d", axis);
        sample_profile(be, what, 3, axis, p_near, 6, VXM_INTERP_NEAREST, 0, 0, w_near);
        snprintf(what, sizeof what, "spatial_transform §4.3 fill (linear) along axis %d", axis);
        sample_profile(be, what, 3, axis, p_fill, 6, VXM_INTERP_LINEAR, 1, -7, w_fill_lin);
        snprintf(what, sizeof what, "spatial_transform §4.3 fill (nearest) along axis %d", axis);
        sample_profile(be, what, 3, axis, p_fill, 6, VXM_INTERP_NEAREST, 1, -7, w_fill_near);
    }
    sample_profile(be, "spatial_transform §4.3 same locations without fill clamp", 3, 0, p_fill, 6,
                   VXM_INTERP_LINEAR, 0, -7, w_nofill_lin);
    for (int axis = 1; axis < 3; axis++) {
        snprintf(what, sizeof what, "spatial_transform 2-D §4.2 linear along axis %d", axis);
        sample_profile(be, what, 2, axis, p_lin, 7, VXM_INTERP_LINEAR, 0, 0, w_lin);
        snprintf(what, sizeof what, "spatial_transform 2-D §4.4 nearest along axis %d", axis);
        sample_profile(be, what, 2, axis, p_near, 6, VXM_INTERP_NEAREST, 0, 0, w_near);
        snprintf(what, sizeof what, "spatial_transform 2-D §4.3 fill along axis %d", axis);
        sample_profile(be, what, 2, axis, p_fill, 6, VXM_INTERP_LINEAR, 1, -7, w_fill_lin);
    }

    /* Trilinear in all three axes at once: V = i + 10j + 100k is reproduced exactly inside the volume. */
    float img[3 * 4 * 5], disp[3 * 4 * 5 * 3], want[3 * 4 * 5];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 5; k++) {
                int v = (i * 4 + j) * 5 + k;
                img[v] = (float)(i + 10 * j + 100 * k);
                float u[3] = {0.25f * (float)((v % 3) - 1), 0.5f * (float)((v % 2) ? 1 : -1),
                              0.125f * (float)(v % 5) - 0.25f};
                float p[3] = {i + u[0], j + u[1], k + u[2]};
                for (int d = 0; d < 3; d++)
                    disp[3 * v + d] = u[d];
                p[0] = fminf(fmaxf(p[0], 0), 2);
                p[1] = fminf(fmaxf(p[1], 0), 3);
                p[2] = fminf(fmaxf(p[2], 0), 4);
                want[v] = p[0] + 10 * p[1] + 100 * p[2];
            }
    vxm_tensor ti, td, ty;
    vxm_status st;
    if ((st = mk(be, 3, 4, 5, 1, img, &ti)) || (st = mk(be, 3, 4, 5, 3, disp, &td)) ||
        (st = mk(be, 3, 4, 5, 1, NULL, &ty)) ||
        (st = be->ops->spatial_transform(be, &ti, &td, 3, VXM_INTERP_LINEAR, 0, 0, &ty)))
        fail_op(be, "spatial_transform trilinear of a linear function", st);
    else
        expect(be, "spatial_transform trilinear of a linear function", &ty, want);
    rel(be, &ti);
    rel(be, &td);
    rel(be, &ty);
}

/* §4.5: affine matrix -> displacement, then (translation case) applied to an image. */
static void test_affine(vxm_backend *be)
{
    const int s0 = 4, s1 = 3, s2 = 5, nv = 4 * 3 * 5;
    float want[4 * 3 * 5 * 3];
    vxm_tensor ty;
    vxm_status st;
    if ((st = mk(be, s0, s1, s2, 3, NULL, &ty))) {
        fail_op(be, "affine_to_disp", st);
        return;
    }
    static const float ident[12] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
    static const float trans[12] = {1, 0, 0, 1.5f, 0, 1, 0, -2, 0, 0, 1, 0.25f};
    static const float scale0[12] = {2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
    for (int center = 0; center < 2; center++) {
        char what[128];
        memset(want, 0, sizeof want);
        snprintf(what, sizeof what, "affine_to_disp §4.5 identity (shift_center %d)", center);
        if ((st = be->ops->affine_to_disp(be, ident, 3, center, &ty)))
            fail_op(be, what, st);
        else
            expect(be, what, &ty, want);
        for (int v = 0; v < nv; v++) {
            want[3 * v] = 1.5f;
            want[3 * v + 1] = -2;
            want[3 * v + 2] = 0.25f;
        }
        snprintf(what, sizeof what, "affine_to_disp §4.5 translation (shift_center %d)", center);
        if ((st = be->ops->affine_to_disp(be, trans, 3, center, &ty)))
            fail_op(be, what, st);
        else
            expect(be, what, &ty, want);
        for (int v = 0; v < nv; v++) {
            int i0 = v / (s1 * s2);
            want[3 * v] = (float)i0 - (center ? 1.5f : 0.0f); /* (2 - 1) * (x0 - c0) */
            want[3 * v + 1] = 0;
            want[3 * v + 2] = 0;
        }
        snprintf(what, sizeof what, "affine_to_disp §4.5 scaling about %s", center ? "the centre" : "the origin");
        if ((st = be->ops->affine_to_disp(be, scale0, 3, center, &ty)))
            fail_op(be, what, st);
        else
            expect(be, what, &ty, want);
    }
    /* The integer translation (1, 0, 0) applied to an image: y[i] = img[min(i + 1, n0 - 1)] (clamped). */
    static const float shift1[12] = {1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0};
    float img[4 * 3 * 5], wimg[4 * 3 * 5];
    for (int v = 0; v < nv; v++)
        img[v] = (float)(v * v % 17);
    for (int v = 0; v < nv; v++) {
        int i0 = v / (s1 * s2), rest = v % (s1 * s2);
        int src = (i0 + 1 < s0 ? i0 + 1 : s0 - 1) * s1 * s2 + rest;
        wimg[v] = img[src];
    }
    vxm_tensor ti, to;
    ti.buf = to.buf = NULL;
    if ((st = mk(be, s0, s1, s2, 1, img, &ti)) || (st = mk(be, s0, s1, s2, 1, NULL, &to)) ||
        (st = be->ops->affine_to_disp(be, shift1, 3, 1, &ty)) ||
        (st = be->ops->spatial_transform(be, &ti, &ty, 3, VXM_INTERP_LINEAR, 0, 0, &to)))
        fail_op(be, "affine translation warps the image", st);
    else
        expect(be, "affine translation warps the image", &to, wimg);
    rel(be, &ti);
    rel(be, &to);
    rel(be, &ty);

    /* 2-D: translation (2, -1) and a 90-degree rotation about the centre of a 1x4x6 grid. */
    static const float t2[6] = {1, 0, 2, 0, 1, -1};
    static const float r2[6] = {0, -1, 0, 1, 0, 0};
    float want2[4 * 6 * 2];
    if ((st = mk(be, 1, 4, 6, 2, NULL, &ty))) {
        fail_op(be, "affine_to_disp 2-D", st);
        return;
    }
    for (int v = 0; v < 24; v++) {
        want2[2 * v] = 2;
        want2[2 * v + 1] = -1;
    }
    if ((st = be->ops->affine_to_disp(be, t2, 2, 1, &ty)))
        fail_op(be, "affine_to_disp 2-D translation", st);
    else
        expect(be, "affine_to_disp 2-D translation", &ty, want2);
    for (int v = 0; v < 24; v++) {
        float m0 = (float)(v / 6) - 1.5f, m1 = (float)(v % 6) - 2.5f;
        want2[2 * v] = -m1 - m0; /* loc = (-m1, m0), disp = loc - m */
        want2[2 * v + 1] = m0 - m1;
    }
    if ((st = be->ops->affine_to_disp(be, r2, 2, 1, &ty)))
        fail_op(be, "affine_to_disp 2-D rotation about the centre", st);
    else
        expect(be, "affine_to_disp 2-D rotation about the centre", &ty, want2);
    rel(be, &ty);
}

/* ---- §5 scaling and squaring ------------------------------------------------------------------------------- */

/* Field of `len` voxels along `axis` (size 2 on the other axes; 2-D: n0 = 1), displacement row[] in the channel of
 * that axis, zero elsewhere; expects out[] in that channel and zeros elsewhere. */
static void vecint_row(vxm_backend *be, int ndim, int axis, const float *row, int steps, const float *out)
{
    int s[3] = {ndim == 2 ? 1 : 2, 2, 2};
    s[axis] = 4;
    int nv = s[0] * s[1] * s[2], ch = axis - (3 - ndim);
    float v[32 * 3], want[32 * 3];
    for (int i = 0; i < nv; i++) {
        int idx[3] = {i / (s[1] * s[2]), i / s[2] % s[1], i % s[2]};
        for (int c = 0; c < ndim; c++)
            v[i * ndim + c] = want[i * ndim + c] = 0;
        v[i * ndim + ch] = row[idx[axis]];
        want[i * ndim + ch] = out[idx[axis]];
    }
    char what[160];
    snprintf(what, sizeof what, "vecint §5 [%g %g %g %g] T=%d %s-D along axis %d", (double)row[0], (double)row[1],
             (double)row[2], (double)row[3], steps, ndim == 2 ? "2" : "3", axis);
    vxm_tensor tv, ty;
    ty.buf = NULL;
    vxm_status st;
    if ((st = mk(be, s[0], s[1], s[2], ndim, v, &tv)) || (st = mk(be, s[0], s[1], s[2], ndim, NULL, &ty)) ||
        (st = be->ops->vecint(be, &tv, ndim, steps, &ty)))
        fail_op(be, what, st);
    else
        expect(be, what, &ty, want);
    rel(be, &tv);
    rel(be, &ty);
}

static void test_vecint(vxm_backend *be)
{
    static const float a[4] = {0, 2, 4, 0}, b[4] = {0, 0, 4, 8};
    static const float a2[4] = {0, 2, 1, 0}, b2[4] = {0, 0, 7, 8};
    static const float a7[4] = {0, 1.8950557f, 0.9828169f, 0}, b7[4] = {0, 0, 7.469197f, 8};
    for (int axis = 0; axis < 3; axis++) {
        vecint_row(be, 3, axis, a, 2, a2);
        vecint_row(be, 3, axis, b, 2, b2);
        vecint_row(be, 3, axis, a, 7, a7);
        vecint_row(be, 3, axis, b, 7, b7);
    }
    for (int axis = 1; axis < 3; axis++) {
        vecint_row(be, 2, axis, a, 7, a7);
        vecint_row(be, 2, axis, b, 7, b7);
    }
    vecint_row(be, 3, 0, a, 0, a); /* T = 0 copies */
    /* A constant field integrates to itself. */
    float v[3 * 4 * 5 * 3];
    for (int i = 0; i < 60; i++) {
        v[3 * i] = 0.7f;
        v[3 * i + 1] = -0.3f;
        v[3 * i + 2] = 0.2f;
    }
    vxm_tensor tv, ty;
    ty.buf = NULL;
    vxm_status st;
    if ((st = mk(be, 3, 4, 5, 3, v, &tv)) || (st = mk(be, 3, 4, 5, 3, NULL, &ty)) ||
        (st = be->ops->vecint(be, &tv, 3, 7, &ty)))
        fail_op(be, "vecint §5 constant field", st);
    else
        expect(be, "vecint §5 constant field", &ty, v);
    rel(be, &tv);
    rel(be, &ty);
}

/* ---- §6 resize / RescaleTransform ------------------------------------------------------------------------- */

/* RescaleTransform(f) (§6.3) from the scale and resize ops: f >= 1 multiply then resize, f < 1 resize then
 * multiply.  Output sizes int(n * f) per axis; a size-1 axis (2-D) keeps factor 1. */
static vxm_status rescale_transform(vxm_backend *be, const vxm_tensor *x, float f, vxm_resize_mapping map,
                                    vxm_tensor *y)
{
    int out[3];
    float fac[3];
    for (int d = 0; d < 3; d++) {
        fac[d] = x->shape[d] == 1 ? 1.0f : f;
        out[d] = (int)((double)x->shape[d] * (double)fac[d]);
    }
    vxm_tensor tmp;
    vxm_status st;
    y->buf = NULL;
    if ((st = vxm_tensor_alloc(be, out, x->channels, y)))
        return st;
    if (f >= 1) {
        if ((st = vxm_tensor_alloc(be, x->shape, x->channels, &tmp)))
            return st;
        if (!(st = be->ops->scale(be, x, f, &tmp)))
            st = be->ops->resize_linear(be, &tmp, map, fac, y);
    } else {
        if ((st = vxm_tensor_alloc(be, out, x->channels, &tmp)))
            return st;
        if (!(st = be->ops->resize_linear(be, x, map, fac, &tmp)))
            st = be->ops->scale(be, &tmp, f, y);
    }
    vxm_tensor_release(be, &tmp);
    return st;
}

/* A field whose channel d (of nch) depends only on spatial axis first+d through prof[d][]. */
static void axis_field(const int s[3], int nch, int first, const float *prof, int plen, float *out)
{
    for (int i = 0; i < s[0]; i++)
        for (int j = 0; j < s[1]; j++)
            for (int k = 0; k < s[2]; k++) {
                int idx[3] = {i, j, k};
                for (int c = 0; c < nch; c++)
                    out[(((size_t)i * s[1] + j) * s[2] + k) * nch + c] = prof[c * plen + idx[first + c]];
            }
}

static void rescale_case(vxm_backend *be, const char *what, int ndim, int n, float f, vxm_resize_mapping map,
                         const float *in_prof, const float *out_prof)
{
    int first = 3 - ndim, m = (int)((double)n * f);
    int si[3] = {1, n, n}, so[3] = {1, m, m};
    if (ndim == 3)
        si[0] = n, so[0] = m;
    float x[6 * 6 * 6 * 3], want[6 * 6 * 6 * 3];
    axis_field(si, ndim, first, in_prof, n, x);
    axis_field(so, ndim, first, out_prof, m, want);
    vxm_tensor tx, ty;
    ty.buf = NULL;
    vxm_status st;
    if ((st = mk(be, si[0], si[1], si[2], ndim, x, &tx)) || (st = rescale_transform(be, &tx, f, map, &ty)))
        fail_op(be, what, st);
    else
        expect(be, what, &ty, want);
    rel(be, &tx);
    rel(be, &ty);
}

static void test_rescale(vxm_backend *be)
{
    static const float up_in[9] = {0, 10, 40, 1, 2, 4, 5, -5, 5};
    static const float up_lin[18] = {0, 8, 16, 32, 56, 80, 2, 2.8f, 3.6f, 4.8f, 6.4f, 8, 10, 2, -6, -6, 2, 10};
    static const float up_leg[18] = {0, 10, 20, 50, 80, 80, 2, 3, 4, 6, 8, 8, 10, 0, -10, 0, 10, 10};
    static const float dn_in[18] = {0, 1, 4, 9, 16, 25, 0, 1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 6};
    static const float dn_lin[9] = {0, 3.25f, 12.5f, 0, 1.25f, 2.5f, 0, 0, 3};
    static const float dn_leg[9] = {0, 2, 8, 0, 1, 2, 0, 0, 0};
    rescale_case(be, "RescaleTransform(2) §6.4 linspace mapping", 3, 3, 2.0f, VXM_RESIZE_LINSPACE, up_in, up_lin);
    rescale_case(be, "RescaleTransform(2) §6.4 legacy i/f mapping", 3, 3, 2.0f, VXM_RESIZE_LEGACY, up_in, up_leg);
    rescale_case(be, "RescaleTransform(0.5) §6.4 linspace mapping", 3, 6, 0.5f, VXM_RESIZE_LINSPACE, dn_in, dn_lin);
    rescale_case(be, "RescaleTransform(0.5) §6.4 legacy i/f mapping", 3, 6, 0.5f, VXM_RESIZE_LEGACY, dn_in, dn_leg);
    /* 2-D: channels 0 and 1 of the same profiles along axes 1 and 2 */
    rescale_case(be, "RescaleTransform(2) 2-D linspace", 2, 3, 2.0f, VXM_RESIZE_LINSPACE, up_in, up_lin);
    rescale_case(be, "RescaleTransform(2) 2-D legacy", 2, 3, 2.0f, VXM_RESIZE_LEGACY, up_in, up_leg);
    rescale_case(be, "RescaleTransform(0.5) 2-D linspace", 2, 6, 0.5f, VXM_RESIZE_LINSPACE, dn_in, dn_lin);
    rescale_case(be, "RescaleTransform(0.5) 2-D legacy", 2, 6, 0.5f, VXM_RESIZE_LEGACY, dn_in, dn_leg);

    /* §6.1 example 80 -> 160: linspace coordinates 0.4968553 (output 1), 39.74843 (80), 78.50314 (158), 79 (159)
     * on a ramp V[i] = i, and the size-equal axes map identically. */
    float ramp[80], want[160 * 2];
    for (int i = 0; i < 80; i++)
        ramp[i] = (float)i;
    static const float fac[3] = {2, 1, 1};
    vxm_tensor tx, ty;
    vxm_status st;
    if ((st = mk(be, 80, 1, 1, 1, ramp, &tx)) || (st = mk(be, 160, 1, 1, 1, NULL, &ty)) ||
        (st = be->ops->resize_linear(be, &tx, VXM_RESIZE_LINSPACE, fac, &ty))) {
        fail_op(be, "resize §6.1 linspace 80 -> 160", st);
    } else {
        float delta = 79.0f / 159.0f;
        for (int i = 0; i < 160; i++)
            want[i] = i == 159 ? 79.0f : (float)i * delta;
        expect(be, "resize §6.1 linspace 80 -> 160", &ty, want);
    }
    rel(be, &tx);
    rel(be, &ty);
}

/* ---- §3.3 step 2 normal sampling ------------------------------------------------------------------------- */

static void test_sample_normal(vxm_backend *be)
{
    static const float mean[4] = {1, 2, 3, 4};
    const float logvar[4] = {0, 2.0f * logf(4.0f), -2.0f * logf(2.0f), 0};
    static const float eps[4] = {0.5f, 1, -2, 0};
    static const float want[4] = {1.5f, 6, 2, 4};
    vxm_tensor tm, tl, te, ty;
    tm.buf = tl.buf = te.buf = ty.buf = NULL;
    vxm_status st;
    if ((st = mk(be, 1, 2, 2, 1, mean, &tm)) || (st = mk(be, 1, 2, 2, 1, logvar, &tl)) ||
        (st = mk(be, 1, 2, 2, 1, eps, &te)) || (st = mk(be, 1, 2, 2, 1, NULL, &ty))) {
        fail_op(be, "sample_normal", st);
        goto done;
    }
    if ((st = be->ops->sample_normal(be, &tm, &tl, &te, &ty)))
        fail_op(be, "sample_normal mean + exp(logvar/2) * eps", st);
    else
        expect(be, "sample_normal mean + exp(logvar/2) * eps", &ty, want);
    if ((st = be->ops->sample_normal(be, &tm, &tl, NULL, &ty)))
        fail_op(be, "sample_normal without noise = mean", st);
    else
        expect(be, "sample_normal without noise = mean", &ty, mean);
done:
    rel(be, &tm);
    rel(be, &tl);
    rel(be, &te);
    rel(be, &ty);
}

/* ---- error paths ------------------------------------------------------------------------------------------ */

static void test_errors(vxm_backend *be)
{
    char name[512];
    vxm_tensor tx, ty, td;
    tx.buf = ty.buf = td.buf = NULL;
    vxm_buffer *w = NULL;
    vxm_status st;
    if ((st = mk(be, 4, 4, 4, 2, NULL, &tx)) || (st = mk(be, 4, 4, 3, 16, NULL, &ty)) ||
        (st = mk(be, 4, 4, 4, 2, NULL, &td)) || (st = be->ops->buffer_alloc(be, 27 * 2 * 16, &w))) {
        fail_op(be, "error paths", st);
        goto done;
    }
    vxm_conv_params p = {{3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 0, 0.2f};
    vxm_context_clear_error(g_ctx);
    st = be->ops->conv(be, &tx, w, NULL, &p, &ty);
    name_of(name, sizeof name, be, "conv rejects a wrong output shape with VXM_ESHAPE");
    tu_report(st == VXM_ESHAPE && vxm_context_error(g_ctx)[0], name, "status %s, message '%s'", vxm_status_name(st),
              vxm_context_error(g_ctx));
    vxm_context_clear_error(g_ctx);
    st = be->ops->spatial_transform(be, &tx, &td, 3, VXM_INTERP_LINEAR, 0, 0, &ty);
    name_of(name, sizeof name, be, "spatial_transform rejects a 2-channel field for ndim 3");
    tu_report(st == VXM_ESHAPE && vxm_context_error(g_ctx)[0], name, "status %s, message '%s'", vxm_status_name(st),
              vxm_context_error(g_ctx));
    vxm_context_clear_error(g_ctx);
done:
    rel(be, &tx);
    rel(be, &ty);
    rel(be, &td);
    if (w)
        be->ops->buffer_free(be, w);
}

int main(void)
{
    g_ctx = vxm_context_create();
    if (!g_ctx) {
        printf("FAIL context: out of memory\n");
        return 1;
    }
    tb_list l;
    tb_open_all(g_ctx, &l);
    for (int i = 0; i < l.n; i++) {
        vxm_backend *be = l.be[i];
        printf("# backend %s: %s\n", be->spec, be->desc);
        test_conv_vectors(be);
        test_conv_random(be);
        test_threads_bitwise(be);
        test_elementwise(be);
        test_maxpool(be);
        test_upsample_concat(be);
        test_transform(be);
        test_affine(be);
        test_vecint(be);
        test_rescale(be);
        test_sample_normal(be);
        test_errors(be);
    }
    tb_close_all(&l);
    vxm_context_free(g_ctx);
#ifdef _OPENMP
    /* Stop the OpenMP worker threads the CPU backend started, so that a leak checker (valgrind) does not report
     * their thread-local storage as "possibly lost" at exit. */
    omp_pause_resource_all(omp_pause_hard);
#endif
    return tu_exit_code();
}
