/* Golden tests on every backend (CPU, each OpenCL device):
 *  - the published model on the 64^3 crop pair: final warp and moved image, and the intermediates
 *    (half-resolution SVF from the flow conv, SVF after scaling and squaring) against the independent
 *    reference (../shared/data/pairs/paircrop_vxm_dense_*);
 *  - the 2-D pair: the spatial transformer with the true warp, linear (image) and nearest (labels).
 * Tolerance 1e-4 max abs (issue 2): the reference is float32 with its own summation order; its float32 vs
 * float64 noise is ~6e-6 voxel on the warp, so a correct port lands ~1e-5, a semantic bug at >= 1e-2. */
#include <string.h>

#include "graph/graph.h"
#include "io/volume_ext.h"
#include "model/model.h"
#include "test_backends.h"
#include "test_data.h"

static void compare_volume(const char *what, const char *spec, const float *got, const vxm_volume *ref,
                           size_t numel, double tol)
{
    char name[256];
    snprintf(name, sizeof name, "%s [%s]", what, spec);
    if (!ref || numel != vxm_volume_numel(ref)) {
        tu_report(0, name, "size mismatch: %zu vs %zu", numel, ref ? vxm_volume_numel(ref) : 0);
        return;
    }
    double d = tu_max_abs_diff(got, ref->data, numel);
    tu_report(d <= tol, name, "max abs diff %.3e > %.1e", d, tol);
    printf("  %s: max abs diff %.3e\n", name, d);
}

static int find_node(const vxm_graph *g, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->nodes[i].name, name))
            return i;
    return -1;
}

/* vols: moving, fixed, golden warp, golden moved, golden SVF (or NULL), golden post-integration (or NULL) */
static void crop_pair(vxm_context *ctx, vxm_backend *be, const vxm_model *m, const char *label,
                      vxm_volume *const vols[6])
{
    char what[160];
    const vxm_volume *mov = vols[0], *fix = vols[1];
    vxm_graph *g = NULL;
    vxm_exec *ex = NULL;
    if (vxm_model_build_graph(ctx, m, mov->ndim, mov->shape, &g) ||
        vxm_exec_begin(be, g, mov->data, fix->data, 1, 0, &ex)) {
        tu_report(0, "paircrop graph", "%s", vxm_context_error(ctx));
        vxm_graph_free(g);
        return;
    }
    int i_flow = vols[4] ? find_node(g, "vxm_dense_flow") : -1;
    int i_int = vols[5] ? find_node(g, "vxm_dense_flow_int") : -1;
    /* the warp (n^3 x 3) is the largest tensor read back here */
    float *buf = malloc(sizeof(float) * vxm_volume_numel(vols[2]));
    for (int i = 0; i < g->n; i++) {
        if (vxm_exec_step(ex, i)) {
            tu_report(0, "paircrop run", "%s", vxm_context_error(ctx));
            goto done;
        }
        if (i == i_flow || i == i_int) {
            const vxm_node *n = &g->nodes[i];
            size_t cnt = (size_t)n->shape[0] * n->shape[1] * n->shape[2] * n->channels;
            vxm_exec_read(ex, i, buf);
            snprintf(what, sizeof what, "paircrop %s %s", label, i == i_flow ? "flow (SVF)" : "postint");
            compare_volume(what, be->spec, buf, vols[i == i_flow ? 4 : 5], cnt, 1e-4);
        }
    }
    vxm_exec_read(ex, g->out_warp, buf);
    snprintf(what, sizeof what, "paircrop %s warp", label);
    compare_volume(what, be->spec, buf, vols[2], vxm_volume_numel(vols[2]), 1e-4);
    vxm_exec_read(ex, g->out_moved, buf);
    snprintf(what, sizeof what, "paircrop %s moved", label);
    compare_volume(what, be->spec, buf, vols[3], vxm_volume_numel(vols[3]), 1e-4);
done:
    free(buf);
    vxm_exec_end(ex);
    vxm_graph_free(g);
}

static void pair2d(vxm_context *ctx, vxm_backend *be, vxm_volume *const v[5])
{
    char name[128];
    for (int nearest = 0; nearest <= 1; nearest++) {
        vxm_volume *out = NULL;
        snprintf(name, sizeof name, "pair2d transformer %s [%s]", nearest ? "nearest" : "linear", be->spec);
        if (vxm_warp_volume(ctx, be, v[nearest ? 1 : 0], v[2], nearest, &out)) {
            tu_report(0, name, "%s", vxm_context_error(ctx));
            continue;
        }
        const vxm_volume *ref = v[nearest ? 4 : 3];
        size_t n = vxm_volume_numel(ref);
        if (vxm_volume_numel(out) != n) {
            tu_report(0, name, "shape mismatch");
        } else if (nearest) {
            size_t bad = 0;
            for (size_t i = 0; i < n; i++)
                bad += out->data[i] != ref->data[i];
            tu_report(bad == 0, name, "%zu of %zu labels differ", bad, n);
        } else {
            /* linear: float32 arithmetic in the same order as the spec; 1e-5 covers the reference's FMA use */
            double d = tu_max_abs_diff(out->data, ref->data, n);
            tu_report(d <= 1e-5, name, "max abs diff %.3e", d);
        }
        vxm_volume_free(out);
    }
}

#define NMODELS 4
static const char *model_names[NMODELS] = {"vxm_dense_brain_T1_3D_mse", "cvpr2018_vm2_cc", "cvpr2018_vm1_cc",
                                           "miccai2018_10_02_init1"};
static const char *golden_prefix[NMODELS] = {"vxm_dense", "cvpr2018_vm2_cc", "cvpr2018_vm1_cc",
                                             "miccai2018_10_02_init1"};

/* `vxm warp` (the command) with the golden warp reproduces the golden moved image, on each device. */
static void cli_warp(vxm_context *ctx, const char *spec, const vxm_volume *golden_moved)
{
    char cmd[4096], name[128], pm[1024], pw[1024];
    snprintf(name, sizeof name, "vxm warp with the golden warp gives the golden moved image [%s]", spec);
    snprintf(cmd, sizeof cmd,
             "./vxm warp --moving %s --warp %s --moved tests/out/cli_warp.nii.gz --device %s >/dev/null 2>&1",
             tu_shared_path(pm, sizeof pm, "data/pairs/paircrop_moving.nii.gz"),
             tu_shared_path(pw, sizeof pw, "data/pairs/paircrop_vxm_dense_warp.nii.gz"), spec);
    vxm_volume *out = NULL;
    if (system(cmd) != 0 || vxm_volume_read(ctx, "tests/out/cli_warp.nii.gz", NULL, &out)) {
        tu_report(0, name, "command failed: %s", cmd);
        return;
    }
    /* same transformer, same float32 formula: only FMA contraction may differ */
    double d = vxm_volume_numel(out) == vxm_volume_numel(golden_moved)
                   ? tu_max_abs_diff(out->data, golden_moved->data, vxm_volume_numel(out))
                   : INFINITY;
    tu_report(d <= 1e-5, name, "max abs diff %.3e", d);
    vxm_volume_free(out);
}

int main(void)
{
    if (!tu_have_shared()) {
        tu_skip("golden crop/2d", "../shared not found (set VXM_SHARED); golden tests need the shared data");
        return 0;
    }
    vxm_context *ctx = vxm_context_create();
    char p[1024], rel[256];
    vxm_model *m[NMODELS] = {0};
    /* per model: golden warp, moved; the current model also has its two intermediates */
    vxm_volume *gold[NMODELS][4] = {{0}};
    vxm_volume *mov = td_load(ctx, "data/pairs/paircrop_moving.nii.gz", NULL);
    vxm_volume *fix = td_load(ctx, "data/pairs/paircrop_fixed.nii.gz", NULL);
    int ok = mov && fix;
    for (int k = 0; k < NMODELS; k++) {
        snprintf(rel, sizeof rel, "data/models/%s.h5", model_names[k]);
        if (vxm_model_load(ctx, tu_shared_path(p, sizeof p, rel), &m[k])) {
            tu_report(0, "load model", "%s", vxm_context_error(ctx));
            ok = 0;
            continue;
        }
        static const char *kinds[4] = {"warp", "moved", "flow", "postint"};
        for (int j = 0; j < (k == 0 ? 4 : 2); j++) {
            snprintf(rel, sizeof rel, "data/pairs/paircrop_%s_%s.nii.gz", golden_prefix[k], kinds[j]);
            ok &= (gold[k][j] = td_load(ctx, rel, NULL)) != NULL;
        }
    }
    static const char *files2d[5] = {"data/pairs/pair2d_moving.nii.gz", "data/pairs/pair2d_moving_seg.nii.gz",
                                     "data/pairs/pair2d_true_warp.nii.gz",
                                     "data/pairs/pair2d_true_warp_moved.nii.gz",
                                     "data/pairs/pair2d_true_warp_moved_seg.nii.gz"};
    vxm_volume *v2d[5] = {0};
    for (int i = 0; i < 5; i++)
        ok &= (v2d[i] = td_load(ctx, files2d[i], NULL)) != NULL;
    if (ok) {
        /* nibabel stored the (192, 224, 2) warp as dim = [3, 192, 224, 2]: read back as thin 3-D, viewed as 2-D */
        vxm_volume_as_2d_channels(v2d[2]);
        tu_report(v2d[0]->ndim == 2 && v2d[2]->ndim == 2 && v2d[2]->channels == 2, "pair2d files are 2-D",
                  "ndim %d, warp channels %d", v2d[0]->ndim, v2d[2]->channels);
        tb_list l;
        tb_open_all(ctx, &l);
        for (int b = 0; b < l.n; b++) {
            /* Mesa rusticl (llvmpipe, 0.3 GFLOP/s convolutions, ~1 min per model here) runs the current model; the
             * 2018 graphs use the same op kinds and run on PoCL and the CPU backend. */
            int rusticl = strstr(l.be[b]->desc, "rusticl") != NULL;
            for (int k = 0; k < NMODELS; k++) {
                if (rusticl && k > 0) {
                    char nm[160];
                    snprintf(nm, sizeof nm, "paircrop %s [%s]", golden_prefix[k], l.be[b]->spec);
                    tu_skip(nm, "Mesa rusticl runs the current model's crop golden only (time on CI); the 2018 "
                                "graphs' ops are the same kinds and run on PoCL and the CPU backend");
                    continue;
                }
                vxm_volume *vols[6] = {mov, fix, gold[k][0], gold[k][1], gold[k][2], gold[k][3]};
                crop_pair(ctx, l.be[b], m[k], golden_prefix[k], vols);
            }
            pair2d(ctx, l.be[b], v2d);
            cli_warp(ctx, l.be[b]->spec, gold[0][1]);
        }
        tb_close_all(&l);
    }
    vxm_volume_free(mov);
    vxm_volume_free(fix);
    for (int k = 0; k < NMODELS; k++) {
        for (int j = 0; j < 4; j++)
            vxm_volume_free(gold[k][j]);
        vxm_model_free(m[k]);
    }
    for (int i = 0; i < 5; i++)
        vxm_volume_free(v2d[i]);
    vxm_context_free(ctx);
    return tu_exit_code();
}
