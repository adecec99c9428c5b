/* Quality-control picture of a registration: one PNG a person can judge at a glance (layout: eval/eval.h).
 *
 * Grey panels are scaled per image (channel 0) from its 1st to its 99th percentile (whole volume, finite
 * values).  The two difference panels share one scale, the 99th percentile of |fixed - moving|, so a good
 * registration shows as a darker |fixed - moved| panel.  The grid panel draws the lines of the identity grid
 * (every 8 voxels, 4 for small images) mapped through x -> x + warp(x) using the in-plane components of the
 * warp, over the moving image (where x + warp(x) lands).  The det J panel is black where det J = 1, red for
 * expansion and blue for contraction (full colour at a factor of 2), green where det J <= 0 (folding).
 * Titles use the canvas' 5x7 pixel font (eval/canvas.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/canvas.h"
#include "eval/eval.h"

/* ---- intensity windows ------------------------------------------------------------------------------ */
/* k-th smallest of a[0..n-1] (reorders a). */
static float select_kth(float *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        /* median of three as pivot */
        float x = a[lo], y = a[mid], z = a[hi];
        float pivot = (x < y) ? ((y < z) ? y : (x < z ? z : x)) : ((x < z) ? x : (y < z ? z : y));
        size_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j && j != (size_t)-1)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return a[k];
    }
    return a[k];
}

typedef struct window {
    float lo, hi;
} window;

/* 1st..99th percentile of channel 0 of v (or of |v - w| when w != NULL; then lo = 0). */
static vxm_status robust_window(vxm_context *ctx, const char *path, const vxm_volume *v, const vxm_volume *w,
                                window *win)
{
    size_t n = (size_t)v->shape[0] * v->shape[1] * v->shape[2], m = 0;
    float *a = malloc(sizeof(float) * (n ? n : 1));
    if (!a)
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
    for (size_t i = 0; i < n; i++) {
        float x = w ? fabsf(v->data[i * (size_t)v->channels] - w->data[i * (size_t)w->channels])
                    : v->data[i * (size_t)v->channels];
        if (isfinite(x))
            a[m++] = x;
    }
    if (!m) {
        win->lo = 0;
        win->hi = 1;
    } else if (w) {
        win->lo = 0;
        win->hi = select_kth(a, m, (size_t)floor(0.99 * (double)(m - 1) + 0.5));
    } else {
        win->lo = select_kth(a, m, (size_t)floor(0.01 * (double)(m - 1) + 0.5));
        win->hi = select_kth(a, m, (size_t)floor(0.99 * (double)(m - 1) + 0.5));
    }
    if (!(win->hi > win->lo)) /* flat image: anything above lo is white */
        win->hi = win->lo + (fabsf(win->lo) > 0 ? fabsf(win->lo) * 1e-3f : 1.0f);
    free(a);
    return VXM_OK;
}

static inline unsigned char grey(float x, const window *w)
{
    if (!isfinite(x))
        return 0;
    float t = (x - w->lo) / (w->hi - w->lo);
    return (unsigned char)lrintf(255.0f * (t < 0 ? 0 : t > 1 ? 1 : t));
}

/* ---- slices ------------------------------------------------------------------------------------------- */
typedef struct plane {
    int axis, index; /* the slice: array index `index` along array axis `axis` */
    int au, av;      /* in-plane array axes: au downwards, av to the right */
    int nu, nv;
} plane;

static size_t voxel(const vxm_volume *v, const plane *p, int u, int w)
{
    int idx[3];
    idx[p->axis] = p->index;
    idx[p->au] = u;
    idx[p->av] = w;
    return ((size_t)idx[0] * v->shape[1] + idx[1]) * v->shape[2] + idx[2];
}

static int planes_of(const vxm_volume *v, plane p[3])
{
    if (v->ndim == 2) {
        p[0] = (plane){0, 0, 1, 2, v->shape[1], v->shape[2]};
        return 1;
    }
    for (int r = 0; r < 3; r++) {
        int au = r == 0 ? 1 : 0, av = r == 2 ? 1 : 2;
        p[r] = (plane){r, v->shape[r] / 2, au, av, v->shape[au], v->shape[av]};
    }
    return 3;
}

void vxm_qc_layout_of(const vxm_volume *fixed, int with_warp, vxm_qc_layout *L)
{
    plane p[3];
    memset(L, 0, sizeof *L);
    L->rows = planes_of(fixed, p);
    L->cols = with_warp ? 8 : 6;
    int mu = 0, mv = 0;
    for (int r = 0; r < L->rows; r++) {
        mu = p[r].nu > mu ? p[r].nu : mu;
        mv = p[r].nv > mv ? p[r].nv : mv;
    }
    int big = mu > mv ? mu : mv;
    L->scale = 1;
    while (big * L->scale < 128 && L->scale < 8)
        L->scale *= 2;
    L->cell_w = mv * L->scale;
    L->cell_h = mu * L->scale;
    L->text_scale = L->cell_w >= 256 ? 2 : 1;
    L->header = 7 * L->text_scale + 8;
    L->footer = with_warp ? 7 * L->text_scale + 6 : 0;
    L->width = L->cols * L->cell_w + (L->cols + 1) * VXM_QC_GAP;
    L->height = L->header + L->rows * (L->cell_h + VXM_QC_GAP) + L->footer;
}

/* ---- the picture --------------------------------------------------------------------------------------- */
static vxm_status check_same(vxm_context *ctx, const char *path, const vxm_volume *v, const char *what,
                             const vxm_volume *fixed)
{
    if (!v || !v->data)
        return vxm_error(ctx, VXM_EINVAL, path, "no %s image given", what);
    if (v->ndim != fixed->ndim || memcmp(v->shape, fixed->shape, sizeof v->shape) || v->channels < 1)
        return vxm_error(ctx, VXM_ESHAPE, path, "the %s image (%dx%dx%d) does not match the fixed image (%dx%dx%d)",
                         what, v->shape[0], v->shape[1], v->shape[2], fixed->shape[0], fixed->shape[1],
                         fixed->shape[2]);
    return VXM_OK;
}

enum { COL_FIXED, COL_MOVING, COL_MOVED, COL_CHECKER, COL_DIFF_BEFORE, COL_DIFF_AFTER, COL_GRID, COL_DETJ };

static const char *const col_titles[] = {"FIXED",         "MOVING",         "MOVED",          "CHECKER FIXED/MOVED",
                                         "|FIXED-MOVING|", "|FIXED-MOVED|", "GRID ON MOVING", "DET J"};
static const char *const col_titles_short[] = {"FIXED", "MOVING", "MOVED", "CHECKER", "|F-MOVING|",
                                               "|F-MOVED|", "GRID", "DET J"};

static void det_colour(double d, unsigned char rgb[3])
{
    if (!(d > 0)) { /* folding (or NaN) */
        rgb[0] = 0;
        rgb[1] = 255;
        rgb[2] = 0;
        return;
    }
    double t = fabs(log2(d));
    t = t > 1 ? 1 : t;
    unsigned char v = (unsigned char)lrint(255 * t), w = (unsigned char)lrint(90 * t);
    if (d >= 1) {
        rgb[0] = v;
        rgb[1] = w / 2;
        rgb[2] = 0;
    } else {
        rgb[0] = 0;
        rgb[1] = w;
        rgb[2] = v;
    }
}

typedef struct qc_inputs {
    const vxm_volume *fixed, *moving, *moved, *warp;
    window wf, wm, wd, wmd; /* fixed, moving, moved, differences */
} qc_inputs;

static void draw_cell(const vxm_canvas *c, const vxm_qc_layout *L, const qc_inputs *in, const plane *p, int row,
                      int col)
{
    int cx, cy;
    vxm_qc_cell_origin(L, row, col, &cx, &cy);
    const int s = L->scale, pw = p->nv * s, ph = p->nu * s;
    const int ox = cx + (L->cell_w - pw) / 2, oy = cy + (L->cell_h - ph) / 2;
    const vxm_rect clip = {ox, oy, ox + pw, oy + ph};
    const vxm_volume *F = in->fixed, *M = in->moving, *D = in->moved, *W = in->warp;
    const size_t cf = (size_t)F->channels, cm = (size_t)M->channels, cd = (size_t)D->channels;
    int big = p->nu > p->nv ? p->nu : p->nv, tile = big / 8 < 4 ? 4 : big / 8;
    for (int u = 0; u < p->nu; u++)
        for (int v = 0; v < p->nv; v++) {
            size_t i = voxel(F, p, u, v);
            float f = F->data[i * cf], m = M->data[i * cm], d = D->data[i * cd];
            unsigned char rgb[3];
            switch (col) {
            case COL_FIXED: rgb[0] = grey(f, &in->wf); break;
            case COL_MOVING: rgb[0] = grey(m, &in->wm); break;
            case COL_MOVED: rgb[0] = grey(d, &in->wmd); break;
            case COL_CHECKER: rgb[0] = ((u / tile + v / tile) & 1) ? grey(d, &in->wmd) : grey(f, &in->wf); break;
            case COL_DIFF_BEFORE: rgb[0] = grey(fabsf(f - m), &in->wd); break;
            case COL_DIFF_AFTER: rgb[0] = grey(fabsf(f - d), &in->wd); break;
            case COL_GRID: rgb[0] = (unsigned char)(grey(m, &in->wm) * 45 / 100); break;
            default: {
                int idx[3];
                idx[p->axis] = p->index;
                idx[p->au] = u;
                idx[p->av] = v;
                det_colour(vxm_eval_det_at(W, idx[0], idx[1], idx[2]), rgb);
            }
            }
            if (col != COL_DETJ)
                rgb[1] = rgb[2] = rgb[0];
            if (col == COL_CHECKER && ((u / tile + v / tile) & 1)) /* a faint warm tint shows the tiles */
                rgb[2] = (unsigned char)(rgb[0] * 80 / 100);
            for (int y = 0; y < s; y++)
                for (int x = 0; x < s; x++)
                    vxm_canvas_put(c, &clip, ox + v * s + x, oy + u * s + y, rgb);
        }
    if (col == COL_GRID) {
        static const unsigned char yellow[3] = {255, 214, 0};
        const size_t C = (size_t)W->channels;
        /* component (channel) of the warp along array axis a: 3-D a, 2-D a - 1 */
        const int ku = W->ndim == 3 ? p->au : p->au - 1, kv = W->ndim == 3 ? p->av : p->av - 1;
        const int g = big >= 128 ? 8 : 4;
        const double half = (s - 1) / 2.0;
        for (int dir = 0; dir < 2; dir++) {
            /* dir 0: lines of constant u (drawn along v); dir 1: lines of constant v */
            int nl = dir ? p->nv : p->nu, na = dir ? p->nu : p->nv;
            for (int l = ((nl - 1) % g) / 2; l < nl; l += g) {
                double px = 0, py = 0;
                for (int a = 0; a < na; a++) {
                    int u = dir ? a : l, v = dir ? l : a;
                    size_t i = voxel(W, p, u, v);
                    double x = ox + (v + (double)W->data[i * C + (size_t)kv]) * s + half;
                    double y = oy + (u + (double)W->data[i * C + (size_t)ku]) * s + half;
                    if (a)
                        vxm_canvas_line(c, &clip, px, py, x, y, yellow);
                    px = x;
                    py = y;
                }
            }
        }
    }
    if (col == COL_FIXED && L->rows > 1) {
        static const unsigned char cyan[3] = {90, 200, 255};
        char lab[48];
        snprintf(lab, sizeof lab, "AXIS %d: %d/%d", p->axis, p->index, F->shape[p->axis]);
        vxm_canvas_text(c, &clip, ox + 2, oy + 2, 1, lab, cyan);
    }
}

vxm_status vxm_qc_png(vxm_context *ctx, const char *path, const vxm_volume *fixed, const vxm_volume *moving,
                      const vxm_volume *moved, const vxm_volume *warp)
{
    if (!path || !*path)
        return vxm_error(ctx, VXM_EINVAL, "qc", "empty output file name");
    if (!fixed || !fixed->data || (fixed->ndim != 2 && fixed->ndim != 3) || fixed->channels < 1)
        return vxm_error(ctx, VXM_EINVAL, path, "no valid fixed image given");
    vxm_status st;
    if ((st = check_same(ctx, path, moving, "moving", fixed)) || (st = check_same(ctx, path, moved, "moved", fixed)))
        return st;
    vxm_jacobian_summary js;
    memset(&js, 0, sizeof js);
    if (warp) {
        if (warp->ndim != fixed->ndim || memcmp(warp->shape, fixed->shape, sizeof warp->shape))
            return vxm_error(ctx, VXM_ESHAPE, path, "the warp (%dx%dx%d) does not match the fixed image (%dx%dx%d)",
                             warp->shape[0], warp->shape[1], warp->shape[2], fixed->shape[0], fixed->shape[1],
                             fixed->shape[2]);
        if ((st = vxm_eval_check_warp(ctx, warp, path)) || (st = vxm_jacobian_stats(ctx, warp, &js)))
            return st;
    }
    qc_inputs in = {fixed, moving, moved, warp, {0, 1}, {0, 1}, {0, 1}, {0, 1}};
    if ((st = robust_window(ctx, path, fixed, NULL, &in.wf)) || (st = robust_window(ctx, path, moving, NULL, &in.wm)) ||
        (st = robust_window(ctx, path, moved, NULL, &in.wmd)) ||
        (st = robust_window(ctx, path, fixed, moving, &in.wd)))
        return st;

    vxm_qc_layout L;
    vxm_qc_layout_of(fixed, warp != NULL, &L);
    vxm_canvas c = {NULL, L.width, L.height};
    c.px = malloc((size_t)c.w * (size_t)c.h * 3);
    if (!c.px)
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
    memset(c.px, 24, (size_t)c.w * (size_t)c.h * 3); /* dark grey background between the panels */
    const vxm_rect all = {0, 0, c.w, c.h};
    static const unsigned char white[3] = {235, 235, 235};

    plane p[3];
    planes_of(fixed, p);
    for (int col = 0; col < L.cols; col++) {
        int cx, cy;
        vxm_qc_cell_origin(&L, 0, col, &cx, &cy);
        const char *t = col_titles[col];
        if (vxm_canvas_text_width(t, L.text_scale) > L.cell_w)
            t = col_titles_short[col];
        const vxm_rect hclip = {cx, 0, cx + L.cell_w, L.header};
        vxm_canvas_text(&c, &hclip, cx + (L.cell_w - vxm_canvas_text_width(t, L.text_scale)) / 2, 4, L.text_scale, t, white);
        for (int r = 0; r < L.rows; r++)
            draw_cell(&c, &L, &in, &p[r], r, col);
    }
    if (warp) {
        char foot[200];
        snprintf(foot, sizeof foot, "DET J <= 0: %zu OF %zu VOXELS (%.4f%%)   DET J MIN %.3f  MAX %.3f  MEAN %.4f",
                 js.nonpositive, js.voxels, 100.0 * js.fraction, js.min, js.max, js.mean);
        vxm_canvas_text(&c, &all, VXM_QC_GAP, L.height - L.footer + 1, L.text_scale, foot, white);
    }
    st = vxm_canvas_write_png(ctx, path, &c);
    free(c.px);
    return st;
}
