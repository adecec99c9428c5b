/* Tile tuner of the OpenCL backend (backend.h vxm_opencl_tune; cl_tile.h): for each tiled kernel and output-channel
 * class, time the direct kernel and every candidate tile the device can run on a representative layer, reject any
 * candidate whose result differs from the direct kernel's in a single bit (the tiled kernels reproduce the direct
 * arithmetic exactly, so a difference is a miscompile), and keep the fastest. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_opencl/cl_internal.h"
#include "backend_opencl/cl_tile.h"

/* Representative layers of the published VxmDense (enc 16-32-32-32, dec 32-32-32-32-32-16-16, 3x3x3 kernels):
 * the full-resolution 16-channel decoder convolutions, the 32-channel ones, and a 64-channel layer for wider
 * models; at 64^3 voxels (32^3 when quick) instead of 160x192x224 so that a candidate takes milliseconds. */
typedef struct tune_layer {
    int cin, cout;
} tune_layer;
static const tune_layer layers[VXM_TILE_NCLASSES] = {{32, 16}, {48, 32}, {64, 64}};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct tune_run {
    vxm_backend *be;
    int kernel, cls;
    vxm_tensor x, dy, y;  /* input, output gradient, output (forward) */
    vxm_buffer *w, *b, *dw;
    vxm_conv_params p;
    float *ref, *out;     /* direct kernel's result, candidate's */
    size_t nout;
} tune_run;

static vxm_status run_once(tune_run *r)
{
    const vxm_backend_ops *o = r->be->ops;
    if (r->kernel == VXM_TILE_CONV)
        return o->conv(r->be, &r->x, r->w, r->b, &r->p, &r->y);
    return o->conv_backward_filter(r->be, &r->x, &r->dy, &r->p, r->dw);
}

/* Minimum seconds over reps runs of tile t (after one untimed run: build, first touch), and its result in r->out. */
static vxm_status time_tile(tune_run *r, const vxm_cl_tile *t, int reps, double *best)
{
    vxm_cl *cl = vxm_cl_of(r->be);
    cl->tile[r->kernel][r->cls] = *t;
    vxm_status st = run_once(r);
    if (!st)
        st = r->be->ops->finish(r->be);
    *best = 1e30;
    for (int i = 0; i < reps && !st; i++) {
        double t0 = now_seconds();
        st = run_once(r);
        if (!st)
            st = r->be->ops->finish(r->be);
        double dt = now_seconds() - t0;
        if (dt < *best)
            *best = dt;
    }
    if (!st)
        st = r->be->ops->buffer_read(r->be, r->kernel == VXM_TILE_CONV ? r->y.buf : r->dw, r->out, r->nout);
    return st;
}

static void fill(float *p, size_t n, unsigned long long *s)
{
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((double)(*s >> 40) / (double)(1ull << 24) - 0.5);
    }
}

static vxm_status setup(tune_run *r, int edge)
{
    vxm_backend *be = r->be;
    const tune_layer *L = &layers[r->cls];
    int shape[3] = {edge, edge, edge};
    for (int d = 0; d < 3; d++) {
        r->p.ksize[d] = 3;
        r->p.stride[d] = 1;
        r->p.pad_lo[d] = 1;
    }
    r->p.leaky = 1;
    r->p.alpha = 0.2f;
    size_t nvox = (size_t)edge * edge * edge, nw = (size_t)27 * L->cin * L->cout;
    size_t nmax = nvox * (size_t)(L->cin > L->cout ? L->cin : L->cout);
    float *host = malloc(nmax * sizeof(float));
    r->nout = r->kernel == VXM_TILE_CONV ? nvox * (size_t)L->cout : nw;
    r->ref = malloc(r->nout * sizeof(float));
    r->out = malloc(r->nout * sizeof(float));
    if (!host || !r->ref || !r->out) {
        free(host);
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of memory");
    }
    unsigned long long s = 0x7a11ed;
    vxm_status st = vxm_tensor_alloc(be, shape, L->cin, &r->x);
    if (!st)
        st = vxm_tensor_alloc(be, shape, L->cout, r->kernel == VXM_TILE_CONV ? &r->y : &r->dy);
    if (!st)
        st = be->ops->buffer_alloc(be, nw, r->kernel == VXM_TILE_CONV ? &r->w : &r->dw);
    if (!st && r->kernel == VXM_TILE_CONV)
        st = be->ops->buffer_alloc(be, (size_t)L->cout, &r->b);
    if (!st) {
        fill(host, nvox * (size_t)L->cin, &s);
        st = vxm_tensor_upload(be, &r->x, host);
    }
    if (!st && r->kernel == VXM_TILE_CONV) {
        fill(host, nw, &s);
        st = be->ops->buffer_write(be, r->w, host, nw);
        fill(host, (size_t)L->cout, &s);
        if (!st)
            st = be->ops->buffer_write(be, r->b, host, (size_t)L->cout);
    } else if (!st) {
        fill(host, nvox * (size_t)L->cout, &s);
        st = vxm_tensor_upload(be, &r->dy, host);
    }
    free(host);
    return st;
}

static void teardown(tune_run *r)
{
    vxm_tensor_release(r->be, &r->x);
    vxm_tensor_release(r->be, &r->y);
    vxm_tensor_release(r->be, &r->dy);
    if (r->w)
        r->be->ops->buffer_free(r->be, r->w);
    if (r->b)
        r->be->ops->buffer_free(r->be, r->b);
    if (r->dw)
        r->be->ops->buffer_free(r->be, r->dw);
    free(r->ref);
    free(r->out);
}

/* Candidate tiles of a class: tn covers the class's channels (16, 32, 64), tm 32-256 voxels (forward) or weight
 * rows (filter), tk 8-32, 4x2 to 8x8 results per work-item; quick keeps a handful. */
static int candidates(int cls, int quick, vxm_cl_tile *out, int max)
{
    static const int tms[] = {64, 128, 256, 32}, tks[] = {16, 8, 32}, rms[] = {4, 8, 2}, rns[] = {4, 2, 8};
    int tn = cls == VXM_TILE_COUT16 ? 16 : cls == VXM_TILE_COUT32 ? 32 : 64;
    int ntm = quick ? 2 : 4, ntk = quick ? 1 : 3, nrm = quick ? 2 : 3, nrn = quick ? 2 : 3, n = 0;
    for (int a = 0; a < ntm; a++)
        for (int k = 0; k < ntk; k++)
            for (int m = 0; m < nrm; m++)
                for (int q = 0; q < nrn; q++) {
                    vxm_cl_tile t = {tms[a], tn, tks[k], rms[m], rns[q]};
                    int wg = (t.tm / t.rm) * (t.tn / t.rn);
                    if (t.rn > tn || wg < 16 || wg > 256 || n == max)
                        continue;
                    out[n++] = t;
                }
    return n;
}

static void report_line(void (*report)(void *, const char *), void *user, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report_line(void (*report)(void *, const char *), void *user, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (report)
        report(user, line);
}

vxm_status vxm_opencl_tune(vxm_backend *be, const vxm_tune_options *o, void (*report)(void *user, const char *line),
                           void *user, char *path, size_t pathlen)
{
    if (strcmp(be->ops->name, "opencl") != 0)
        return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "tuning is for OpenCL devices");
    vxm_cl *cl = vxm_cl_of(be);
    int reps = o->reps > 0 ? o->reps : 3, edge = o->quick ? 32 : 64;
    vxm_cl_tile keep[VXM_TILE_NKERNELS][VXM_TILE_NCLASSES];
    memcpy(keep, cl->tile, sizeof keep);
    report_line(report, user, "%-7s %-6s %-10s %-18s %9s %9s %9s", "kernel", "Cout", "layer", "best tile", "ms",
                "GFLOP/s", "direct ms");
    vxm_status st = VXM_OK;
    for (int k = 0; k < VXM_TILE_NKERNELS && !st; k++)
        for (int c = 0; c < VXM_TILE_NCLASSES && !st; c++) {
            tune_run r = {.be = be, .kernel = k, .cls = c};
            st = setup(&r, edge);
            vxm_cl_tile direct = {0, 0, 0, 0, 0}, best = direct, cand[128];
            double tdirect = 0, tbest = 0;
            if (!st)
                st = time_tile(&r, &direct, reps, &tdirect);
            if (!st)
                memcpy(r.ref, r.out, r.nout * sizeof(float));
            tbest = tdirect;
            int n = st ? 0 : candidates(c, o->quick, cand, 128), rejected = 0;
            if (o->max_candidates > 0 && n > o->max_candidates)
                n = o->max_candidates;
            for (int i = 0; i < n && !st; i++) {
                double t;
                if (!vxm_cl_tile_fits(cl, &cand[i]))
                    continue;
                /* a tile this driver cannot build or run (the conv path then resets its entry to direct) */
                if (time_tile(&r, &cand[i], reps, &t) != VXM_OK || cl->tile[k][c].tm == 0) {
                    vxm_context_clear_error(be->ctx);
                    vxm_context_clear_notes(be->ctx);
                    rejected++;
                    continue;
                }
                if (memcmp(r.out, r.ref, r.nout * sizeof(float)) != 0) {
                    rejected++;
                    continue;
                }
                if (t < tbest) {
                    tbest = t;
                    best = cand[i];
                }
            }
            if (!st) {
                char name[40], note[96] = "";
                vxm_cl_tile_format(&best, name, sizeof name);
                if (rejected)
                    snprintf(note, sizeof note, " (%d tiles rejected: failed, or differ from the direct kernel)",
                             rejected);
                double flop = 2.0 * 27.0 * layers[c].cin * layers[c].cout * (double)edge * edge * edge;
                report_line(report, user, "%-7s %-6d %3d->%-5d %-18s %9.3f %9.1f %9.3f%s",
                            k == VXM_TILE_CONV ? "conv" : "filter", layers[c].cout, layers[c].cin, layers[c].cout,
                            name, tbest * 1e3, flop / tbest * 1e-9, tdirect * 1e3, note);
                keep[k][c] = best;
            }
            teardown(&r);
        }
    memcpy(cl->tile, keep, sizeof keep);
    if (!st) {
        snprintf(cl->tile_source, sizeof cl->tile_source, "tuned");
        if (o->dry_run)
            snprintf(path, pathlen, "(not written)");
        else
            st = vxm_cl_tiles_save(be, path, pathlen);
    }
    return st;
}

void vxm_opencl_tile_summary(vxm_backend *be, char *buf, size_t n)
{
    if (strcmp(be->ops->name, "opencl") != 0) {
        snprintf(buf, n, "direct kernels");
        return;
    }
    vxm_cl *cl = vxm_cl_of(be);
    size_t used = 0;
    static const char *const kn[VXM_TILE_NKERNELS] = {"conv", "filter"};
    buf[0] = '\0';
    for (int k = 0; k < VXM_TILE_NKERNELS; k++) {
        used += (size_t)snprintf(buf + used, used < n ? n - used : 0, "%s%s", k ? "; " : "", kn[k]);
        for (int c = 0; c < VXM_TILE_NCLASSES; c++) {
            char t[40];
            vxm_cl_tile_format(&cl->tile[k][c], t, sizeof t);
            used += (size_t)snprintf(buf + used, used < n ? n - used : 0, " %s", t);
        }
    }
    snprintf(buf + (used < n ? used : n - 1), used < n ? n - used : 1, " (%s)", cl->tile_source);
}
