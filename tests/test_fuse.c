/* The fused ops (backend.h conv_pool / conv_upcat) and the fusion pass (graph/fuse.h):
 *  (a) op level: on the CPU backend bitwise equal to the unfused op sequence (conv + maxpool; upsample + concat +
 *      conv) over 3-D and 2-D shapes, odd sizes, 1..48 channels, pool/upsampling 2x2x2 and 1x2x2, LeakyReLU on and
 *      off, and for 1 and 2 threads -- except conv_upcat with Cout a multiple of 16, which folds the upsampling
 *      into the weights (cpu_conv_fused.c: fewer FLOPs, another summation order) and is held to test_ops_agree.c's
 *      tolerance of the unfused ops instead (float32 rounding of sums of hundreds of terms: ~1e-6 relative, the
 *      tolerance 1e-5 of the largest output), and bitwise again with VXM_CPU_FOLD=0; the same bits for 1 and 2
 *      threads always; on every OpenCL device within that tolerance of the CPU;
 *  (b) graph level: a small hand-made graph with both patterns fuses (fewer nodes, one node of each fused op) and
 *      gives the same bits; the published model on the 64^3 crop pair gives warps within 1e-4 voxel (the golden
 *      tests' tolerance; bitwise before the folding) through vxm_register with and without fusion (VXM_FUSE=0) on
 *      the CPU. */
#include <math.h>
#include <string.h>

#include "graph/fuse.h"
#include "graph/graph.h"
#include "model/model.h"
#include "test_backends.h"
#include "test_data.h"

typedef struct fcase {
    int n[3];      /* conv_pool: conv input; conv_upcat: the skip's (= upsampled) shape */
    int c1, c2;    /* conv_pool: Cin, -; conv_upcat: channels of a, of skip */
    int cout;
    int f[3];
    int leaky;
} fcase;

static unsigned long long rng_state = 12345;

static float frand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static float *rand_floats(size_t n)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
    return p;
}

static size_t vol(const int s[3])
{
    return (size_t)s[0] * (size_t)s[1] * (size_t)s[2];
}

/* Device tensor of shape s, c channels, holding host data h (NULL: uninitialised). */
static vxm_status dev_tensor(vxm_backend *be, const int s[3], int c, const float *h, vxm_tensor *t)
{
    vxm_status st = vxm_tensor_alloc(be, s, c, t);
    if (!st && h)
        st = vxm_tensor_upload(be, t, h);
    return st;
}

static vxm_status dev_buffer(vxm_backend *be, const float *h, size_t n, vxm_buffer **b)
{
    vxm_status st = be->ops->buffer_alloc(be, n, b);
    return st ? st : be->ops->buffer_write(be, *b, h, n);
}

static void conv_params(const fcase *c, vxm_conv_params *p)
{
    memset(p, 0, sizeof *p);
    for (int d = 0; d < 3; d++) {
        int m;
        p->ksize[d] = c->n[0] == 1 && d == 0 ? 1 : 3;
        p->stride[d] = 1;
        vxm_same_padding(c->n[d], p->ksize[d], 1, &m, &p->pad_lo[d]);
    }
    p->leaky = c->leaky;
    p->alpha = 0.2f;
}

/* Runs case c on be, fused (out) and, when ref is non-NULL, unfused (ref).  Returns the output's float count, or 0
 * on failure (reported). */
static size_t run_case(vxm_backend *be, const fcase *c, int upcat, const float *const host[4], float *out,
                       float *ref)
{
    vxm_conv_params p;
    conv_params(c, &p);
    int sa[3], sy[3];
    for (int d = 0; d < 3; d++) {
        sa[d] = upcat ? c->n[d] / c->f[d] : c->n[d];
        sy[d] = upcat ? c->n[d] : c->n[d] / c->f[d];
    }
    int cin = upcat ? c->c1 + c->c2 : c->c1;
    size_t nw = (size_t)p.ksize[0] * p.ksize[1] * p.ksize[2] * (size_t)cin * (size_t)c->cout;
    vxm_tensor a = {{0}, 0, NULL}, s = {{0}, 0, NULL}, y = {{0}, 0, NULL}, t1 = {{0}, 0, NULL},
               t2 = {{0}, 0, NULL}, t3 = {{0}, 0, NULL};
    vxm_buffer *w = NULL, *b = NULL;
    const vxm_backend_ops *o = be->ops;
    vxm_status st = dev_tensor(be, sa, c->c1, host[0], &a);
    if (!st && upcat)
        st = dev_tensor(be, c->n, c->c2, host[1], &s);
    if (!st)
        st = dev_buffer(be, host[2], nw, &w);
    if (!st)
        st = dev_buffer(be, host[3], (size_t)c->cout, &b);
    if (!st)
        st = dev_tensor(be, sy, c->cout, NULL, &y);
    if (!st)
        st = upcat ? o->conv_upcat(be, &a, c->f, &s, w, b, &p, &y) : o->conv_pool(be, &a, w, b, &p, c->f, &y);
    if (!st)
        st = vxm_tensor_download(be, &y, out);
    if (!st && ref && upcat) {
        st = dev_tensor(be, c->n, c->c1, NULL, &t1);
        if (!st)
            st = o->upsample_nearest(be, &a, c->f, &t1);
        if (!st)
            st = dev_tensor(be, c->n, cin, NULL, &t2);
        if (!st)
            st = o->concat(be, &t1, &s, &t2);
        if (!st)
            st = o->conv(be, &t2, w, b, &p, &y);
    } else if (!st && ref) {
        st = dev_tensor(be, c->n, c->cout, NULL, &t1);
        if (!st)
            st = o->conv(be, &a, w, b, &p, &t1);
        if (!st)
            st = o->maxpool(be, &t1, c->f, &y);
    }
    if (!st && ref)
        st = vxm_tensor_download(be, &y, ref);
    if (!st)
        st = o->finish(be);
    if (st)
        tu_report(0, upcat ? "conv_upcat run" : "conv_pool run", "[%s] %s", be->spec, vxm_context_error(be->ctx));
    vxm_tensor *all[] = {&a, &s, &y, &t1, &t2, &t3};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
        vxm_tensor_release(be, all[k]);
    if (w)
        o->buffer_free(be, w);
    if (b)
        o->buffer_free(be, b);
    return st ? 0 : vol(sy) * (size_t)c->cout;
}

static void op_level(vxm_context *ctx, const tb_list *l)
{
    static const fcase cases[] = {
        /* conv_pool: n, Cin, -, Cout, f, leaky */
        {{5, 7, 6}, 1, 0, 1, {2, 2, 2}, 1},
        {{4, 5, 9}, 2, 0, 16, {2, 2, 2}, 1},
        {{7, 6, 5}, 3, 0, 17, {2, 2, 2}, 0},
        {{1, 9, 11}, 2, 0, 8, {1, 2, 2}, 1},
        {{1, 13, 6}, 16, 0, 3, {1, 2, 2}, 0}, /* narrow kernels (Cout <= 4, Cin a vector multiple) */
        {{6, 6, 7}, 32, 0, 2, {2, 2, 2}, 1},
        {{1, 24, 30}, 48, 0, 48, {1, 2, 2}, 1},
        {{16, 14, 17}, 16, 0, 32, {2, 2, 2}, 1}, /* enough work for several threads */
        /* conv_upcat: skip shape, Ca, Cskip, Cout, f, leaky */
        {{6, 10, 8}, 1, 1, 1, {2, 2, 2}, 1},
        {{4, 6, 10}, 32, 16, 32, {2, 2, 2}, 1},
        {{2, 6, 6}, 5, 3, 7, {2, 2, 2}, 0},
        {{1, 10, 14}, 8, 8, 3, {1, 2, 2}, 1}, /* narrow */
        {{1, 14, 18}, 16, 32, 2, {1, 2, 2}, 0},
        {{1, 22, 26}, 32, 16, 48, {1, 2, 2}, 1},
        {{4, 6, 8}, 8, 4, 4, {2, 2, 2}, 1}, /* Cout 4: never folded (the narrow kernels on the baseline variant) */
        {{16, 16, 18}, 32, 16, 32, {2, 2, 2}, 1},
    };
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    char name[200];
    for (int i = 0; i < ncases; i++) {
        const fcase *c = &cases[i];
        int upcat = c->c2 > 0;
        int sa[3];
        for (int d = 0; d < 3; d++)
            sa[d] = upcat ? c->n[d] / c->f[d] : c->n[d];
        int cin = upcat ? c->c1 + c->c2 : c->c1;
        size_t nw = (size_t)(c->n[0] == 1 ? 9 : 27) * (size_t)cin * (size_t)c->cout;
        float *host[4] = {rand_floats(vol(sa) * (size_t)c->c1), rand_floats(vol(c->n) * (size_t)(c->c2 + 1)),
                          rand_floats(nw), rand_floats((size_t)c->cout)};
        size_t nout = vol(c->n) * (size_t)c->cout; /* an upper bound of both outputs */
        float *fused = malloc(nout * sizeof(float)), *ref = malloc(nout * sizeof(float)),
              *dev = malloc(nout * sizeof(float));
        snprintf(name, sizeof name, "%s %dx%dx%d %d+%d->%d f %dx%dx%d%s", upcat ? "conv_upcat" : "conv_pool",
                 c->n[0], c->n[1], c->n[2], c->c1, c->c2, c->cout, c->f[0], c->f[1], c->f[2],
                 c->leaky ? " leaky" : "");
        char nm[300];
        /* CPU, 1 and 2 threads: fused == unfused, bitwise, and the same bits for both thread counts */
        float *first = malloc(nout * sizeof(float));
        size_t n1 = 0;
        for (int th = 1; th <= 2; th++) {
            vxm_context_set_threads(ctx, th);
            size_t n = run_case(l->be[0], c, upcat, (const float *const *)host, fused, ref);
            if (upcat && c->cout % 16 == 0) { /* folded (see the header) */
                double refmax = 0;
                for (size_t j = 0; j < n; j++)
                    refmax = fabs(ref[j]) > refmax ? fabs(ref[j]) : refmax;
                double nmse = n ? tu_nmse(fused, ref, n) : 1, mad = n ? tu_max_abs_diff(fused, ref, n) : 1;
                double tol = 1e-5 * (1.0 + refmax);
                snprintf(nm, sizeof nm, "%s [cpu, %d thread%s] folded, within rounding of the unfused ops", name, th,
                         th > 1 ? "s" : "");
                tu_report(n > 0 && nmse <= 1e-10 && mad <= tol, nm,
                          "nmse %.3g (<= 1e-10), max abs diff %.3g (<= %.3g)", nmse, mad, tol);
                if (th == 1)
                    printf("  %s: folded vs unfused max abs diff %.3g of max |y| %.3g, nmse %.3g\n", name, mad,
                           refmax, nmse);
                /* VXM_CPU_FOLD=0: the loader path, bitwise the unfused ops */
                float *unf = malloc(nout * sizeof(float));
                setenv("VXM_CPU_FOLD", "0", 1);
                size_t nu = run_case(l->be[0], c, upcat, (const float *const *)host, unf, ref);
                unsetenv("VXM_CPU_FOLD");
                snprintf(nm, sizeof nm, "%s [cpu, %d thread%s] VXM_CPU_FOLD=0 bitwise equal to the unfused ops", name,
                         th, th > 1 ? "s" : "");
                tu_report(nu == n && nu > 0 && memcmp(unf, ref, nu * sizeof(float)) == 0, nm, "max abs diff %.3g",
                          nu ? tu_max_abs_diff(unf, ref, nu) : -1.0);
                free(unf);
            } else {
                snprintf(nm, sizeof nm, "%s [cpu, %d thread%s] bitwise equal to the unfused ops", name, th,
                         th > 1 ? "s" : "");
                tu_report(n > 0 && memcmp(fused, ref, n * sizeof(float)) == 0, nm, "max abs diff %.3g",
                          n ? tu_max_abs_diff(fused, ref, n) : -1.0);
            }
            if (th == 1) {
                memcpy(first, fused, n * sizeof(float));
                n1 = n;
            } else {
                snprintf(nm, sizeof nm, "%s [cpu] same bits for 1 and 2 threads", name);
                tu_report(n == n1 && n > 0 && memcmp(first, fused, n * sizeof(float)) == 0, nm, "differ");
            }
        }
        vxm_context_set_threads(ctx, 0);
        /* OpenCL devices against the CPU's fused result */
        for (int k = 1; k < l->n; k++) {
            size_t n = run_case(l->be[k], c, upcat, (const float *const *)host, dev, NULL);
            double refmax = 0;
            for (size_t j = 0; j < n; j++)
                refmax = fabs(first[j]) > refmax ? fabs(first[j]) : refmax;
            double nmse = n ? tu_nmse(dev, first, n) : 1, mad = n ? tu_max_abs_diff(dev, first, n) : 1;
            double tol = 1e-5 * (1.0 + refmax);
            snprintf(nm, sizeof nm, "%s [%s] agrees with the cpu", name, l->be[k]->spec);
            tu_report(n == n1 && nmse <= 1e-10 && mad <= tol, nm, "nmse %.3g (<= 1e-10), max abs diff %.3g (<= %.3g)",
                      nmse, mad, tol);
        }
        for (int k = 0; k < 4; k++)
            free(host[k]);
        free(fused);
        free(ref);
        free(dev);
        free(first);
    }
}

static int count_op(const vxm_graph *g, vxm_op op)
{
    int n = 0;
    for (int i = 0; i < g->n; i++)
        n += g->nodes[i].op == op;
    return n;
}

/* input -> convA -> maxpool -> convB -> upsample -> concat(., convS(input)) -> convC (output), 2-D 1x12x10. */
static vxm_graph *small_graph(float *const w[4])
{
    vxm_graph *g = vxm_graph_new(2);
    int shape[3] = {1, 12, 10}, k[3] = {1, 3, 3}, s[3] = {1, 1, 1};
    int x = vxm_graph_add_input(g, "x", 0, shape, 2);
    int sk = vxm_graph_add_conv(g, x, "convS", k, s, 4, 1, 0.2f, w[0], w[0] + 200);
    int a = vxm_graph_add_conv(g, x, "convA", k, s, 8, 1, 0.2f, w[1], w[1] + 200);
    int p = vxm_graph_add_op(g, VXM_OP_MAXPOOL, "pool", a, -1);
    g->nodes[p].p.pool.f[0] = 1;
    g->nodes[p].p.pool.f[1] = g->nodes[p].p.pool.f[2] = 2;
    g->nodes[p].shape[1] /= 2;
    g->nodes[p].shape[2] /= 2;
    int b = vxm_graph_add_conv(g, p, "convB", k, s, 8, 1, 0.2f, w[2], w[2] + 600);
    int u = vxm_graph_add_op(g, VXM_OP_UPSAMPLE, "up", b, -1);
    g->nodes[u].p.pool.f[0] = 1;
    g->nodes[u].p.pool.f[1] = g->nodes[u].p.pool.f[2] = 2;
    g->nodes[u].shape[1] *= 2;
    g->nodes[u].shape[2] *= 2;
    int cat = vxm_graph_add_op(g, VXM_OP_CONCAT, "cat", u, sk);
    g->nodes[cat].channels = 12;
    int c = vxm_graph_add_conv(g, cat, "convC", k, s, 3, 0, 0.0f, w[3], w[3] + 400);
    g->nodes[c].flags |= VXM_NODE_OUTPUT;
    g->n_forward = g->n;
    g->out_warp = c;
    return g;
}

static void graph_small(vxm_context *ctx, vxm_backend *be)
{
    float *w[4];
    for (int k = 0; k < 4; k++)
        w[k] = rand_floats(1000);
    float *in = rand_floats(240);
    vxm_graph *g0 = small_graph(w), *g1 = small_graph(w);
    int n0 = g1->n;
    vxm_status st = vxm_graph_fuse(ctx, &g1);
    tu_report(!st && g1->n == n0 - 3 && count_op(g1, VXM_OP_CONV_POOL) == 1 && count_op(g1, VXM_OP_CONV_UPCAT) == 1 &&
                  !strcmp(g1->nodes[g1->out_warp].name, "convC"),
              "fusion pass: small graph", "%d -> %d nodes, %d conv_pool, %d conv_upcat", n0, g1->n,
              count_op(g1, VXM_OP_CONV_POOL), count_op(g1, VXM_OP_CONV_UPCAT));
    float out[2][360];
    vxm_graph *gs[2] = {g0, g1};
    for (int k = 0; k < 2 && !st; k++) {
        vxm_exec *ex = NULL;
        st = vxm_exec_begin(be, gs[k], in, in, 1, 0, &ex);
        if (!st)
            st = vxm_exec_run_all(ex);
        if (!st)
            st = vxm_exec_read(ex, gs[k]->out_warp, out[k]);
        vxm_exec_end(ex);
    }
    tu_report(!st && memcmp(out[0], out[1], sizeof out[0]) == 0, "fusion pass: small graph, same bits [cpu]", "%s",
              st ? vxm_context_error(ctx) : "outputs differ");
    /* a training graph (parameter gradients) and VXM_FUSE=0 are left alone */
    setenv("VXM_FUSE", "0", 1);
    n0 = g0->n;
    st = vxm_graph_fuse(ctx, &g0);
    unsetenv("VXM_FUSE");
    tu_report(!st && g0->n == n0, "fusion pass: VXM_FUSE=0 leaves the graph alone", "%d -> %d nodes", n0, g0->n);
    vxm_graph_free(g0);
    vxm_graph_free(g1);
    for (int k = 0; k < 4; k++)
        free(w[k]);
    free(in);
}

/* The published model on the 64^3 crop pair: vxm_register fused (default) and unfused (VXM_FUSE=0). */
static void graph_model(vxm_context *ctx, vxm_backend *be)
{
    if (!tu_have_shared()) {
        tu_skip("fusion: published model", "../shared not found (set VXM_SHARED); the model test needs the shared data");
        return;
    }
    char p[1024];
    vxm_model *m = NULL;
    vxm_volume *mov = td_load(ctx, "data/pairs/paircrop_moving.nii.gz", NULL);
    vxm_volume *fix = td_load(ctx, "data/pairs/paircrop_fixed.nii.gz", NULL);
    if (!mov || !fix || vxm_model_load(ctx, tu_shared_path(p, sizeof p, "data/models/vxm_dense_brain_T1_3D_mse.h5"),
                                       &m)) {
        tu_report(0, "fusion: published model", "cannot load: %s", vxm_context_error(ctx));
        vxm_volume_free(mov);
        vxm_volume_free(fix);
        return;
    }
    vxm_graph *g = NULL;
    vxm_status st = vxm_model_build_graph(ctx, m, mov->ndim, mov->shape, &g);
    int n0 = g ? g->n : 0;
    if (!st)
        st = vxm_graph_fuse(ctx, &g);
    /* half-resolution U-Net: three upsample + concat pairs, and the first conv feeds only its pool */
    tu_report(!st && g->n == n0 - 7 && count_op(g, VXM_OP_CONV_UPCAT) == 3 && count_op(g, VXM_OP_CONV_POOL) == 1,
              "fusion: published model graph has fewer nodes",
              "%d -> %d nodes, %d conv_upcat, %d conv_pool: %s", n0, g ? g->n : 0, g ? count_op(g, VXM_OP_CONV_UPCAT) : 0,
              g ? count_op(g, VXM_OP_CONV_POOL) : 0, st ? vxm_context_error(ctx) : "");
    printf("  published model at 64^3: %d -> %d nodes (%d conv_upcat, %d conv_pool)\n", n0, g ? g->n : 0,
           g ? count_op(g, VXM_OP_CONV_UPCAT) : 0, g ? count_op(g, VXM_OP_CONV_POOL) : 0);
    vxm_graph_free(g);
    vxm_volume *moved[2] = {0}, *warp[2] = {0};
    for (int k = 0; k < 2 && !st; k++) {
        if (k == 0)
            setenv("VXM_FUSE", "0", 1);
        st = vxm_register(ctx, be, m, mov, fix, NULL, &moved[k], &warp[k]);
        unsetenv("VXM_FUSE");
    }
    size_t nw = st ? 0 : vxm_volume_numel(warp[0]), nm = st ? 0 : vxm_volume_numel(moved[0]);
    int same = !st && nw == vxm_volume_numel(warp[1]) && nm == vxm_volume_numel(moved[1]);
    double dw = same ? tu_max_abs_diff(warp[0]->data, warp[1]->data, nw) : INFINITY;
    double dm = same ? tu_max_abs_diff(moved[0]->data, moved[1]->data, nm) : INFINITY;
    tu_report(same && dw <= 1e-4 && dm <= 1e-4,
              "fusion: published model on the crop pair, fused and unfused warps within 1e-4 [cpu]",
              "%s: warp max abs diff %.3g, moved %.3g", st ? vxm_context_error(ctx) : "differ", dw, dm);
    printf("  published model at 64^3, fused vs unfused: warp max abs diff %.3g, moved %.3g\n", dw, dm);
    vxm_volume *vols[] = {moved[0], moved[1], warp[0], warp[1], mov, fix};
    for (size_t k = 0; k < sizeof vols / sizeof vols[0]; k++)
        vxm_volume_free(vols[k]);
    vxm_model_free(m);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    if (l.n == 0)
        tu_report(0, "fusion", "no backend");
    else
        op_level(ctx, &l);
    if (l.n > 0) /* graph level: the CPU backend */
        graph_small(ctx, l.be[0]), graph_model(ctx, l.be[0]);
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
