/* Evaluation code (src/eval):
 *  - Jacobian determinant on analytic warps (zero, linear u = A x incl. borders and size-1/size-2 axes,
 *    a folding warp with known det values), and against an independent implementation written here (the
 *    NumPy recipe spelled out differently: np.gradient of each displacement component into its own array,
 *    plus the identity, det by the rule of Sarrus) on random smooth warps and on the shared true warps;
 *  - the QC PNG: written for the crop pair and the 2-D pair, decoded back with libpng, size, content and
 *    panel checks; error paths leave no file.
 * With `--jacobian WARP` it only prints the independent det J figures of WARP ("nonpositive N voxels M
 * min X"), which tests/t_cli_test.sh compares with what `vxm test` prints. */
#include <errno.h>
#include <png.h>
#include <unistd.h>

#include "eval/eval.h"
#include "io/volume_ext.h"
#include "test_util.h"

/* ---- the independent reference ----------------------------------------------------------------------- */
/* np.gradient(f, axis) for a C-order array of dims[0..nd-1], unit spacing, edge_order=1.  NumPy rejects an
 * axis of length 1; the library's convention is a zero derivative there, which is what this gives. */
static void np_gradient(const double *f, const int *dims, int nd, int axis, double *out)
{
    size_t outer = 1, inner = 1, n = (size_t)dims[axis];
    for (int d = 0; d < axis; d++)
        outer *= (size_t)dims[d];
    for (int d = axis + 1; d < nd; d++)
        inner *= (size_t)dims[d];
    for (size_t o = 0; o < outer; o++)
        for (size_t in = 0; in < inner; in++) {
            const double *a = f + o * n * inner + in;
            double *g = out + o * n * inner + in;
            if (n == 1) {
                g[0] = 0;
                continue;
            }
            g[0] = a[inner] - a[0];
            g[(n - 1) * inner] = a[(n - 1) * inner] - a[(n - 2) * inner];
            for (size_t k = 1; k + 1 < n; k++)
                g[k * inner] = (a[(k + 1) * inner] - a[(k - 1) * inner]) / 2.0;
        }
}

/* det J per voxel (malloc'd), NULL on allocation failure. */
static double *ref_jacobian(const vxm_volume *w)
{
    int nd = w->ndim == 3 ? 3 : 2, dims[3] = {1, 1, 1};
    if (nd == 3) {
        dims[0] = w->shape[0];
        dims[1] = w->shape[1];
        dims[2] = w->shape[2];
    } else {
        dims[0] = w->shape[1];
        dims[1] = w->shape[2];
    }
    size_t n = vxm_volume_numel(w) / (size_t)w->channels;
    double *comp = malloc(sizeof(double) * n), *g[3][3] = {{NULL}}, *det = malloc(sizeof(double) * n);
    int ok = comp && det;
    for (int a = 0; a < nd; a++)
        for (int c = 0; c < nd; c++)
            ok = ok && (g[a][c] = malloc(sizeof(double) * n)) != NULL;
    if (ok) {
        for (int c = 0; c < nd; c++) {
            for (size_t i = 0; i < n; i++)
                comp[i] = w->data[i * (size_t)nd + (size_t)c];
            for (int a = 0; a < nd; a++)
                np_gradient(comp, dims, nd, a, g[a][c]);
        }
        for (size_t i = 0; i < n; i++) {
            double m[3][3];
            for (int a = 0; a < nd; a++)
                for (int c = 0; c < nd; c++)
                    m[a][c] = g[a][c][i] + (a == c ? 1.0 : 0.0);
            if (nd == 2)
                det[i] = m[0][0] * m[1][1] - m[0][1] * m[1][0];
            else
                det[i] = m[0][0] * m[1][1] * m[2][2] + m[0][1] * m[1][2] * m[2][0] + m[0][2] * m[1][0] * m[2][1] -
                         m[0][2] * m[1][1] * m[2][0] - m[0][0] * m[1][2] * m[2][1] - m[0][1] * m[1][0] * m[2][2];
        }
    }
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 3; c++)
            free(g[a][c]);
    free(comp);
    if (!ok) {
        free(det);
        return NULL;
    }
    return det;
}

static double det3(const double m[3][3])
{
    return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
           m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
}

/* ---- analytic warps ---------------------------------------------------------------------------------- */
static vxm_volume *warp_new(int ndim, int s0, int s1, int s2)
{
    const int shape[3] = {s0, s1, s2};
    vxm_volume *w = vxm_volume_new(ndim, shape, ndim);
    if (w)
        memset(w->data, 0, sizeof(float) * vxm_volume_numel(w));
    return w;
}

/* max |det - expect(i,j,k)| over the volume, from vxm_jacobian_determinant_f64 */
static double max_err_const(vxm_context *ctx, const vxm_volume *w, double expect)
{
    double *d = NULL;
    if (vxm_jacobian_determinant_f64(ctx, w, &d))
        return INFINITY;
    double e = 0;
    size_t n = vxm_volume_numel(w) / (size_t)w->channels;
    for (size_t i = 0; i < n; i++)
        e = fmax(e, fabs(d[i] - expect)) + (d[i] != d[i] ? INFINITY : 0);
    free(d);
    return e;
}

static void test_zero(vxm_context *ctx)
{
    vxm_volume *w3 = warp_new(3, 7, 8, 9), *w2 = warp_new(2, 1, 6, 7);
    tu_report(max_err_const(ctx, w3, 1.0) == 0, "jacobian zero warp 3-D: det 1 everywhere", "max error %g",
              max_err_const(ctx, w3, 1.0));
    tu_report(max_err_const(ctx, w2, 1.0) == 0, "jacobian zero warp 2-D: det 1 everywhere", "max error %g",
              max_err_const(ctx, w2, 1.0));
    vxm_jacobian_summary s;
    int st = vxm_jacobian_stats(ctx, w3, &s);
    tu_report(!st && s.voxels == 7 * 8 * 9 && s.nonpositive == 0 && s.min == 1 && s.max == 1 && s.mean == 1,
              "jacobian stats zero warp", "st %d voxels %zu nonpos %zu min %g max %g", st, s.voxels, s.nonpositive,
              s.min, s.max);
    vxm_volume_free(w3);
    vxm_volume_free(w2);
}

/* u_c(x) = sum_a A[c][a] x_a + b_c with dyadic coefficients: exact in float32, so every difference is exact
 * and det J = det(I + A) at every voxel, borders included. */
static void fill_linear(vxm_volume *w, const double A[3][3], const double b[3])
{
    int nd = w->ndim;
    for (int i = 0; i < w->shape[0]; i++)
        for (int j = 0; j < w->shape[1]; j++)
            for (int k = 0; k < w->shape[2]; k++) {
                int x[3] = {i, j, k};
                const int *xs = nd == 3 ? x : x + 1; /* spatial coordinates */
                size_t v = ((size_t)i * w->shape[1] + j) * w->shape[2] + k;
                for (int c = 0; c < nd; c++) {
                    double u = b[c];
                    for (int a = 0; a < nd; a++)
                        u += A[c][a] * xs[a];
                    w->data[v * (size_t)nd + (size_t)c] = (float)u;
                }
            }
}

static void test_linear(vxm_context *ctx)
{
    const double A[3][3] = {{0.25, -0.125, 0.0625}, {0.5, -0.25, 0.125}, {-0.375, 0.1875, 0.5}};
    const double b[3] = {0.5, -1.25, 2.0};
    double IA[3][3];
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++)
            IA[r][c] = A[r][c] + (r == c);
    const double expect3 = det3(IA), expect2 = IA[0][0] * IA[1][1] - IA[0][1] * IA[1][0];
    struct {
        const char *name;
        int ndim, s[3];
        double expect;
    } cases[] = {
        {"jacobian linear warp 3-D 5x6x7: det(I+A) at every voxel", 3, {5, 6, 7}, expect3},
        {"jacobian linear warp 3-D 2x6x3 (size-2 axis, one-sided only)", 3, {2, 6, 3}, expect3},
        {"jacobian linear warp 2-D 9x11: det(I+A) at every voxel", 2, {1, 9, 11}, expect2},
        {"jacobian linear warp 2-D 2x5 (size-2 axis)", 2, {1, 2, 5}, expect2},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        vxm_volume *w = warp_new(cases[t].ndim, cases[t].s[0], cases[t].s[1], cases[t].s[2]);
        fill_linear(w, A, b);
        double e = max_err_const(ctx, w, cases[t].expect);
        tu_report(e <= 1e-12, cases[t].name, "max |det - %.6f| = %g", cases[t].expect, e);
        vxm_volume_free(w);
    }
    /* an axis of size 1 in a 3-D warp: no displacement derivative along it, so row 0 of M is e0 and
     * det = the minor of rows/columns 1, 2 */
    vxm_volume *w = warp_new(3, 1, 6, 7);
    fill_linear(w, A, b);
    double M[3][3];
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 3; c++)
            M[a][c] = a == 0 ? (c == 0) : IA[c][a]; /* M[a][c] = d f_c / d x_a */
    double e = max_err_const(ctx, w, det3(M));
    tu_report(e <= 1e-12, "jacobian 3-D warp with a size-1 axis: zero derivative along it", "max error %g", e);
    vxm_volume_free(w);
}

/* f_0 along axis 0 = 0 1 2 3 2 1 0 7 8 9 (the identity plus u_0), other components zero: np.gradient gives
 * d f_0 / d x_0 = 1 1 1 0 -1 -1 3 4 1 1, which is det J; det <= 0 at i = 3, 4, 5. */
static void test_fold(vxm_context *ctx)
{
    static const double f0[10] = {0, 1, 2, 3, 2, 1, 0, 7, 8, 9}, expect[10] = {1, 1, 1, 0, -1, -1, 3, 4, 1, 1};
    vxm_volume *w = warp_new(3, 10, 4, 5);
    for (int i = 0; i < 10; i++)
        for (int v = 0; v < 20; v++)
            w->data[((size_t)i * 20 + (size_t)v) * 3] = (float)(f0[i] - i);
    double *d = NULL;
    int st = vxm_jacobian_determinant_f64(ctx, w, &d);
    double err = st ? INFINITY : 0;
    for (int i = 0; i < 10 && !st; i++)
        for (int v = 0; v < 20; v++)
            err = fmax(err, fabs(d[i * 20 + v] - expect[i]));
    tu_report(err == 0, "jacobian folding warp: det values", "st %d max error %g", st, err);
    free(d);
    vxm_jacobian_summary s;
    st = vxm_jacobian_stats(ctx, w, &s);
    tu_report(!st && s.nonpositive == 60 && s.voxels == 200 && s.min == -1 && s.max == 4 &&
                  fabs(s.fraction - 0.3) < 1e-15,
              "jacobian folding warp: 60 of 200 voxels with det <= 0", "st %d nonpositive %zu min %g max %g", st,
              s.nonpositive, s.min, s.max);
    vxm_volume *dv = NULL;
    st = vxm_jacobian_determinant(ctx, w, &dv);
    tu_report(!st && dv->channels == 1 && dv->ndim == 3 && dv->shape[0] == 10 &&
                  vxm_jacobian_count_nonpositive(dv) == 60 && dv->data[4 * 20] == -1.0f,
              "jacobian float volume + count_nonpositive", "st %d count %zu", st,
              st ? 0 : vxm_jacobian_count_nonpositive(dv));
    vxm_volume_free(dv);
    vxm_volume_free(w);
}

static void test_bad_input(vxm_context *ctx)
{
    const int shape[3] = {4, 5, 6};
    vxm_volume *w = vxm_volume_new(3, shape, 2), *det = NULL;
    memset(w->data, 0, sizeof(float) * vxm_volume_numel(w));
    int st = vxm_jacobian_determinant(ctx, w, &det);
    tu_report(st == VXM_ESHAPE && det == NULL && strstr(vxm_context_error(ctx), "channel"),
              "jacobian rejects a 3-D warp with 2 channels", "st %d: %s", st, vxm_context_error(ctx));
    vxm_volume_free(w);
    w = warp_new(3, 4, 5, 6);
    w->data[7] = NAN;
    st = vxm_jacobian_determinant(ctx, w, &det);
    tu_report(st == VXM_ENUMERIC && det == NULL, "jacobian rejects NaN in the warp", "st %d: %s", st,
              vxm_context_error(ctx));
    vxm_volume_free(w);
}

/* ---- library vs the independent implementation -------------------------------------------------------- */
static void compare_ref(vxm_context *ctx, const char *name, const vxm_volume *w, int expect_no_folds)
{
    double *d = NULL, *r = ref_jacobian(w);
    int st = vxm_jacobian_determinant_f64(ctx, w, &d);
    if (st || !r) {
        tu_report(0, name, "st %d: %s", st, vxm_context_error(ctx));
        free(d);
        free(r);
        return;
    }
    size_t n = vxm_volume_numel(w) / (size_t)w->channels, nl = 0, nr = 0;
    double e = 0, mn = INFINITY;
    for (size_t i = 0; i < n; i++) {
        double x = fabs(d[i] - r[i]);
        e = (x > e || x != x) ? (x != x ? INFINITY : x) : e;
        nl += d[i] <= 0;
        nr += r[i] <= 0;
        mn = fmin(mn, r[i]);
    }
    vxm_jacobian_summary s;
    st = vxm_jacobian_stats(ctx, w, &s);
    tu_report(e <= 1e-9 && nl == nr && !st && s.nonpositive == nr && (!expect_no_folds || nr == 0), name,
              "max |lib - ref| %.3g, det<=0 lib %zu ref %zu stats %zu", e, nl, nr, s.nonpositive);
    printf("  %s: max |lib - ref| %.3g, det<=0: %zu of %zu, min det %.6f\n", name, e, nr, n, mn);
    free(d);
    free(r);
}

/* smooth random field: a few sinusoids with random phases and amplitudes up to `amp` voxels */
static void fill_smooth(vxm_volume *w, double amp, unsigned seed)
{
    double ph[3][3], fr[3][3], am[3];
    for (int c = 0; c < 3; c++) {
        for (int a = 0; a < 3; a++) {
            seed = seed * 1664525u + 1013904223u;
            ph[c][a] = (seed >> 8) / 16777216.0 * 6.283185307179586;
            seed = seed * 1664525u + 1013904223u;
            fr[c][a] = 0.1 + 0.25 * ((seed >> 8) / 16777216.0);
        }
        seed = seed * 1664525u + 1013904223u;
        am[c] = amp * (0.5 + 0.5 * ((seed >> 8) / 16777216.0));
    }
    int nd = w->ndim;
    for (int i = 0; i < w->shape[0]; i++)
        for (int j = 0; j < w->shape[1]; j++)
            for (int k = 0; k < w->shape[2]; k++) {
                double x[3] = {i, j, k};
                size_t v = ((size_t)i * w->shape[1] + j) * w->shape[2] + k;
                for (int c = 0; c < nd; c++) {
                    double u = 1;
                    for (int a = 0; a < 3; a++)
                        u *= sin(fr[c][a] * x[a] + ph[c][a]);
                    w->data[v * (size_t)nd + (size_t)c] = (float)(am[c] * u + 0.3 * sin(0.2 * (i + j - k)));
                }
            }
}

static void test_reference(vxm_context *ctx)
{
    vxm_volume *w = warp_new(3, 24, 20, 28);
    fill_smooth(w, 1.5, 7);
    compare_ref(ctx, "jacobian vs independent np.gradient: smooth random 3-D warp", w, 1);
    fill_smooth(w, 9.0, 11); /* strong enough to fold */
    compare_ref(ctx, "jacobian vs independent np.gradient: folding random 3-D warp", w, 0);
    vxm_volume_free(w);
    w = warp_new(2, 1, 40, 33);
    fill_smooth(w, 6.0, 3);
    compare_ref(ctx, "jacobian vs independent np.gradient: random 2-D warp", w, 0);
    vxm_volume_free(w);
    w = warp_new(3, 1, 9, 10);
    fill_smooth(w, 1.0, 5);
    compare_ref(ctx, "jacobian vs independent np.gradient: 3-D warp with a size-1 axis", w, 0);
    vxm_volume_free(w);

    if (!tu_have_shared()) {
        tu_skip("jacobian on the shared true warps", "../shared not found (set VXM_SHARED)");
        return;
    }
    char p[1024];
    w = NULL;
    if (vxm_volume_read(ctx, tu_shared_path(p, sizeof p, "data/pairs/pair1_true_warp.nii.gz"), NULL, &w)) {
        tu_report(0, "jacobian pair1 true warp", "%s", vxm_context_error(ctx));
    } else {
        compare_ref(ctx, "jacobian vs independent np.gradient: pair1 true warp, no det <= 0", w, 1);
    }
    vxm_volume_free(w);
    w = NULL;
    if (vxm_volume_read(ctx, tu_shared_path(p, sizeof p, "data/pairs/pair2d_true_warp.nii.gz"), NULL, &w) ||
        !vxm_volume_as_2d_channels(w)) {
        tu_report(0, "jacobian pair2d true warp", "%s", vxm_context_error(ctx));
    } else {
        compare_ref(ctx, "jacobian vs independent np.gradient: pair2d true warp", w, 0);
    }
    vxm_volume_free(w);
}

/* ---- QC PNG ------------------------------------------------------------------------------------------- */
typedef struct rgb_image {
    int w, h;
    unsigned char *px;
} rgb_image;

static int decode_png(const char *path, rgb_image *im)
{
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    im->px = NULL;
    if (!png_image_begin_read_from_file(&pi, path))
        return 0;
    pi.format = PNG_FORMAT_RGB;
    im->w = (int)pi.width;
    im->h = (int)pi.height;
    im->px = malloc(PNG_IMAGE_SIZE(pi));
    if (!im->px || !png_image_finish_read(&pi, NULL, im->px, 0, NULL)) {
        png_image_free(&pi);
        free(im->px);
        im->px = NULL;
        return 0;
    }
    return 1;
}

static double grey_std(const rgb_image *im)
{
    double s = 0, s2 = 0, n = (double)im->w * im->h * 3;
    for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++) {
        s += im->px[i];
        s2 += (double)im->px[i] * im->px[i];
    }
    double m = s / n;
    return sqrt(fmax(s2 / n - m * m, 0));
}

/* mean |a - b| (green channel) between two cells of row `row`, or the mean of one cell when b < 0 */
static double cell_mad(const rgb_image *im, const vxm_qc_layout *L, int row, int a, int b)
{
    int xa, ya, xb = 0, yb = 0;
    vxm_qc_cell_origin(L, row, a, &xa, &ya);
    if (b >= 0)
        vxm_qc_cell_origin(L, row, b, &xb, &yb);
    double s = 0;
    for (int y = 0; y < L->cell_h; y++)
        for (int x = 0; x < L->cell_w; x++) {
            double va = im->px[((size_t)(ya + y) * im->w + xa + x) * 3 + 1];
            double vb = b >= 0 ? im->px[((size_t)(yb + y) * im->w + xb + x) * 3 + 1] : 0;
            s += fabs(va - vb);
        }
    return s / ((double)L->cell_w * L->cell_h);
}

/* pixels of a cell with the given colour test: 0 yellow (grid), 1 any non-grey (det map) */
static long cell_count(const rgb_image *im, const vxm_qc_layout *L, int row, int col, int what)
{
    int x0, y0;
    long n = 0;
    vxm_qc_cell_origin(L, row, col, &x0, &y0);
    for (int y = 0; y < L->cell_h; y++)
        for (int x = 0; x < L->cell_w; x++) {
            const unsigned char *p = im->px + ((size_t)(y0 + y) * im->w + x0 + x) * 3;
            if (what == 0 ? (p[0] == 255 && p[1] == 214 && p[2] == 0) : (p[0] != p[1] || p[1] != p[2]))
                n++;
        }
    return n;
}

static vxm_volume *load(vxm_context *ctx, const char *rel)
{
    char p[1024];
    vxm_volume *v = NULL;
    if (vxm_volume_read(ctx, tu_shared_path(p, sizeof p, rel), NULL, &v)) {
        tu_report(0, rel, "%s", vxm_context_error(ctx));
        return NULL;
    }
    return v;
}

static void check_qc(const char *name, const char *path, const vxm_volume *fix, int with_warp, int expect_w,
                     int expect_h)
{
    rgb_image im;
    char n[256];
    snprintf(n, sizeof n, "%s: decodes, %dx%d", name, expect_w, expect_h);
    if (!decode_png(path, &im)) {
        tu_report(0, n, "cannot decode %s", path);
        return;
    }
    vxm_qc_layout L;
    vxm_qc_layout_of(fix, with_warp, &L);
    tu_report(im.w == expect_w && im.h == expect_h && L.width == im.w && L.height == im.h, n, "got %dx%d", im.w,
              im.h);
    double sd = grey_std(&im);
    snprintf(n, sizeof n, "%s: not blank", name);
    tu_report(sd > 30, n, "pixel std dev %.1f", sd);
    for (int r = 0; r < L.rows; r++) {
        double fm = cell_mad(&im, &L, r, 0, 1), fd = cell_mad(&im, &L, r, 0, 2);
        double before = cell_mad(&im, &L, r, 4, -1), after = cell_mad(&im, &L, r, 5, -1);
        snprintf(n, sizeof n, "%s row %d: panels differ, moved closer to fixed than moving", name, r);
        tu_report(fm > 2 && fd < fm && after < before && before > 2, n,
                  "|fixed-moving| %.2f |fixed-moved| %.2f, diff panels before %.2f after %.2f", fm, fd, before, after);
        printf("  %s row %d: mean |fixed - moving| panel %.2f, |fixed - moved| %.2f; diff panels %.2f -> %.2f\n", name,
               r, fm, fd, before, after);
        if (with_warp) {
            long grid = cell_count(&im, &L, r, 6, 0), colour = cell_count(&im, &L, r, 7, 1);
            snprintf(n, sizeof n, "%s row %d: grid lines and det J map drawn", name, r);
            tu_report(grid > L.cell_w * 4 && colour > L.cell_w * L.cell_h / 10, n, "grid pixels %ld, coloured %ld",
                      grid, colour);
        }
    }
    free(im.px);
}

static int exists(const char *p)
{
    return access(p, F_OK) == 0;
}

static void test_qc(vxm_context *ctx)
{
    if (!tu_have_shared()) {
        tu_skip("qc png", "../shared not found (set VXM_SHARED)");
        return;
    }
    mkdir("tests/out", 0777);
    mkdir("tests/out/eval", 0777);
    vxm_volume *f = load(ctx, "data/pairs/paircrop_fixed.nii.gz"), *m = load(ctx, "data/pairs/paircrop_moving.nii.gz");
    vxm_volume *d = load(ctx, "data/pairs/paircrop_vxm_dense_moved.nii.gz");
    vxm_volume *w = load(ctx, "data/pairs/paircrop_vxm_dense_warp.nii.gz");
    if (f && m && d && w) {
        const char *out = "tests/out/eval/crop_qc.png", *out2 = "tests/out/eval/crop_qc_nowarp.png";
        remove(out);
        int st = vxm_qc_png(ctx, out, f, m, d, w);
        tu_report(!st, "qc png crop pair written", "%s", vxm_context_error(ctx));
        /* 64^3: slices 64x64 at scale 2 -> 128x128 cells; 8 columns: 8*128 + 9*4 = 1060 wide;
         * title 15 + 3 rows * (128 + 4) + footer 13 = 424 high */
        if (!st)
            check_qc("qc png crop pair", out, f, 1, 1060, 424);
        st = vxm_qc_png(ctx, out2, f, m, d, NULL);
        tu_report(!st, "qc png crop pair without warp written", "%s", vxm_context_error(ctx));
        if (!st)
            check_qc("qc png crop pair without warp", out2, f, 0, 6 * 128 + 7 * 4, 15 + 3 * 132);

        const char *bad = "tests/out/eval/nodir/qc.png";
        st = vxm_qc_png(ctx, bad, f, m, d, w);
        tu_report(st == VXM_EIO && !exists(bad) && strstr(vxm_context_error(ctx), bad) &&
                      !strchr(vxm_context_error(ctx), '\n'),
                  "qc png into a missing directory: one-line error, no file", "st %d: %s", st, vxm_context_error(ctx));
        const char *bad2 = "tests/out/eval/mismatch.png";
        remove(bad2);
        vxm_volume *big = load(ctx, "data/pairs/fixed.nii.gz");
        st = big ? (int)vxm_qc_png(ctx, bad2, f, big, d, w) : -1;
        tu_report(st == VXM_ESHAPE && !exists(bad2), "qc png shape mismatch: error, no file", "st %d: %s", st,
                  vxm_context_error(ctx));
        vxm_volume_free(big);
        /* no temporary files left behind by any of the above */
        int left = 0;
        char cmd[256];
        snprintf(cmd, sizeof cmd, "ls -a tests/out/eval | grep -c tmp");
        FILE *pp = popen(cmd, "r");
        if (pp) {
            if (fscanf(pp, "%d", &left) != 1)
                left = -1;
            pclose(pp);
        }
        tu_report(left == 0, "qc png leaves no temporary files", "%d left", left);
    }
    vxm_volume_free(f);
    vxm_volume_free(m);
    vxm_volume_free(d);
    vxm_volume_free(w);

    f = load(ctx, "data/pairs/pair2d_fixed.nii.gz");
    m = load(ctx, "data/pairs/pair2d_moving.nii.gz");
    d = load(ctx, "data/pairs/pair2d_true_warp_moved.nii.gz");
    w = load(ctx, "data/pairs/pair2d_true_warp.nii.gz");
    if (f && m && d && w) {
        int as2d = vxm_volume_as_2d_channels(w);
        const char *out = "tests/out/eval/pair2d_qc.png";
        int st = vxm_qc_png(ctx, out, f, m, d, w);
        tu_report(as2d && !st, "qc png 2-D pair written", "%s", vxm_context_error(ctx));
        /* 192x224, one row at scale 1: 8*224 + 9*4 = 1828 wide, 15 + 192 + 4 + 13 = 224 high */
        if (!st)
            check_qc("qc png 2-D pair", out, f, 1, 1828, 224);
    }
    vxm_volume_free(f);
    vxm_volume_free(m);
    vxm_volume_free(d);
    vxm_volume_free(w);
}

/* --jacobian WARP: independent figures for tests/t_cli_test.sh */
static int print_jacobian(const char *path)
{
    vxm_context *ctx = vxm_context_create();
    vxm_volume *w = NULL;
    int rc = 1;
    if (vxm_volume_read(ctx, path, NULL, &w)) {
        fprintf(stderr, "%s\n", vxm_context_error(ctx));
    } else {
        vxm_volume_as_2d_channels(w);
        double *r = ref_jacobian(w);
        if (r) {
            size_t n = vxm_volume_numel(w) / (size_t)w->channels, np = 0;
            double mn = INFINITY;
            for (size_t i = 0; i < n; i++) {
                np += r[i] <= 0;
                mn = fmin(mn, r[i]);
            }
            printf("nonpositive %zu voxels %zu min %.6f\n", np, n, mn);
            free(r);
            rc = 0;
        }
    }
    vxm_volume_free(w);
    vxm_context_free(ctx);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--jacobian"))
        return print_jacobian(argv[2]);
    vxm_context *ctx = vxm_context_create();
    test_zero(ctx);
    test_linear(ctx);
    test_fold(ctx);
    test_bad_input(ctx);
    test_reference(ctx);
    test_qc(ctx);
    vxm_context_free(ctx);
    return tu_exit_code();
}
