/* The CPU backend's instruction-set variants (issue 12; src/backend_cpu/cpu_isa.h), each forced with VXM_CPU_ISA:
 *  - a variant this CPU lacks is refused when the backend is created, with a one-line error (SKIP: not testable);
 *  - an unknown variant name is refused;
 *  - the backend names its variant in its description;
 *  - the published model on the 64^3 crop pair matches the golden warp and moved image within test_golden_crop.c's
 *    1e-4 (the golden is float32 with its own summation order; FMA vs mul + add moves results by ~1e-6);
 *  - on one variant, results are bitwise identical for 1 and 2 threads and from run to run.
 * tests/t_cpu_isa.sh checks the default choice, `vxm devices`, the baseline objects and op agreement per variant. */
#include <string.h>

#include "backend.h"
#include "test_data.h"

#define NVAR 3
static const char *variants[NVAR] = {"baseline", "avx2", "avx512"};

static int one_line(const char *s)
{
    return s && *s && !strchr(s, '\n');
}

/* Registers the crop pair on `threads` threads; the warp (n^3 x 3) and moved image into *warp, *moved. */
static int run(vxm_context *ctx, vxm_backend *be, const vxm_model *m, vxm_volume *const in[2], int threads,
               vxm_volume **moved, vxm_volume **warp)
{
    vxm_context_set_threads(ctx, threads);
    if (vxm_register(ctx, be, m, in[0], in[1], NULL, moved, warp)) {
        tu_report(0, "register the crop pair", "%s", vxm_context_error(ctx));
        return -1;
    }
    return 0;
}

static int same_bits(const vxm_volume *a, const vxm_volume *b)
{
    size_t n = vxm_volume_numel(a);
    return n == vxm_volume_numel(b) && !memcmp(a->data, b->data, n * sizeof(float));
}

static void variant(vxm_context *ctx, const char *isa, const vxm_model *m, vxm_volume *const in[2],
                    vxm_volume *const gold[2], vxm_volume **warp_out)
{
    char name[160];
    vxm_backend *be = NULL;
    setenv("VXM_CPU_ISA", isa, 1);
    if (vxm_backend_cpu_create(ctx, &be)) {
        const char *e = vxm_context_error(ctx);
        snprintf(name, sizeof name, "VXM_CPU_ISA=%s refused with one line", isa);
        tu_report(one_line(e) && strstr(e, "VXM_CPU_ISA") && strstr(e, "lacks"), name, "message '%s'", e);
        snprintf(name, sizeof name, "crop pair [%s]", isa);
        tu_skip(name, "this CPU lacks the variant");
        vxm_context_clear_error(ctx);
        return;
    }
    char want[64];
    snprintf(want, sizeof want, "%s kernels", isa);
    snprintf(name, sizeof name, "backend describes its variant [%s]", isa);
    tu_report(strstr(be->desc, want) != NULL, name, "description '%s'", be->desc);

    vxm_volume *moved[3] = {0}, *warp[3] = {0};
    static const int threads[3] = {1, 2, 2};
    int ok = 1;
    for (int r = 0; r < 3 && ok; r++)
        ok = run(ctx, be, m, in, threads[r], &moved[r], &warp[r]) == 0;
    if (ok) {
        const vxm_volume *got[2] = {warp[0], moved[0]};
        static const char *what[2] = {"warp", "moved"};
        for (int k = 0; k < 2; k++) {
            size_t n = vxm_volume_numel(gold[k]);
            double d = vxm_volume_numel(got[k]) == n ? tu_max_abs_diff(got[k]->data, gold[k]->data, n) : INFINITY;
            snprintf(name, sizeof name, "crop pair %s matches the golden [%s]", what[k], isa);
            tu_report(d <= 1e-4, name, "max abs diff %.3e > 1e-4", d);
            printf("  %s: max abs diff %.3e\n", name, d);
        }
        snprintf(name, sizeof name, "1 and 2 threads bitwise identical [%s]", isa);
        tu_report(same_bits(warp[0], warp[1]) && same_bits(moved[0], moved[1]), name, "outputs differ");
        snprintf(name, sizeof name, "run to run bitwise identical [%s]", isa);
        tu_report(same_bits(warp[1], warp[2]) && same_bits(moved[1], moved[2]), name, "outputs differ");
    }
    *warp_out = warp[0];
    for (int r = 0; r < 3; r++) {
        vxm_volume_free(moved[r]);
        if (r)
            vxm_volume_free(warp[r]);
    }
    vxm_backend_close(be);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    vxm_backend *be = NULL;
    setenv("VXM_CPU_ISA", "sse9", 1);
    vxm_status st = vxm_backend_cpu_create(ctx, &be);
    tu_report(st == VXM_EINVAL && !be && one_line(vxm_context_error(ctx)), "unknown VXM_CPU_ISA refused",
              "status %d, message '%s'", (int)st, vxm_context_error(ctx));
    vxm_backend_close(be);
    vxm_context_clear_error(ctx);

    if (!tu_have_shared()) {
        tu_skip("crop pair per variant", "../shared not found (set VXM_SHARED)");
        vxm_context_free(ctx);
        return tu_exit_code();
    }
    char p[1024];
    vxm_model *m = NULL;
    vxm_volume *in[2] = {td_load(ctx, "data/pairs/paircrop_moving.nii.gz", NULL),
                         td_load(ctx, "data/pairs/paircrop_fixed.nii.gz", NULL)};
    vxm_volume *gold[2] = {td_load(ctx, "data/pairs/paircrop_vxm_dense_warp.nii.gz", NULL),
                           td_load(ctx, "data/pairs/paircrop_vxm_dense_moved.nii.gz", NULL)};
    if (vxm_model_load(ctx, tu_shared_path(p, sizeof p, "data/models/vxm_dense_brain_T1_3D_mse.h5"), &m))
        tu_report(0, "load model", "%s", vxm_context_error(ctx));
    vxm_volume *warp[NVAR] = {0};
    if (m && in[0] && in[1] && gold[0] && gold[1])
        for (int v = 0; v < NVAR; v++)
            variant(ctx, variants[v], m, in, gold, &warp[v]);
    /* for the record: how far the variants are apart (different FMA use and summation order) */
    for (int v = 1; v < NVAR; v++)
        if (warp[0] && warp[v])
            printf("  warp %s vs baseline: max abs diff %.3e\n", variants[v],
                   tu_max_abs_diff(warp[v]->data, warp[0]->data, vxm_volume_numel(warp[0])));
    unsetenv("VXM_CPU_ISA");
    for (int v = 0; v < NVAR; v++)
        vxm_volume_free(warp[v]);
    for (int k = 0; k < 2; k++) {
        vxm_volume_free(in[k]);
        vxm_volume_free(gold[k]);
    }
    vxm_model_free(m);
    vxm_context_free(ctx);
    return tu_exit_code();
}
