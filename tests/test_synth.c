/* SynthMorph's generative model (src/synth, training doc §6.3) as a whole: the distribution of every random draw,
 * exact values for fixed draws (the blur kernel of §6.3 item 7, Perlin grid corners), and agreement between the
 * CPU backend and every OpenCL device (label maps bitwise, images within float rounding).  The element-wise ops it
 * is made of are checked one by one in test_synth_ops.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/counter_rng.h"
#include "synth/synth.h"
#include "test_backends.h"

static void check_blur_taps(void)
{
    /* §6.3 item 7 [derived], sigma = blur_std = 1 */
    static const double want[7] = {0.00443305, 0.05400558, 0.24203623, 0.39905028, 0.24203623, 0.05400558, 0.00443305};
    float taps[16];
    int n = vxm_synth_gauss_taps(1.0, 1.0, taps, 16);
    double err = n == 7 ? 0 : 1;
    for (int i = 0; i < 7 && n == 7; i++)
        err = fmax(err, fabs(taps[i] - want[i]));
    tu_report(err < 1e-7, "synth blur kernel sigma 1", "7 taps, max |diff| %.2e from the doc's values", err);
    /* the width follows the upper bound blur_std, the shape the drawn sigma */
    n = vxm_synth_gauss_taps(0.5, 1.0, taps, 16);
    tu_report(n == 7 && fabs(taps[3] - 0.78657071) < 1e-6, "synth blur kernel sigma 0.5 of max 1",
              "%d taps, centre %.8f (want 7, 0.78657071)", n, n > 3 ? taps[3] : 0.0);
}

typedef struct stat1 {
    double n, sum, sum2, lo, hi;
} stat1;

static void st_add(stat1 *s, double x)
{
    if (s->n == 0)
        s->lo = s->hi = x;
    s->n++;
    s->sum += x;
    s->sum2 += x * x;
    s->lo = fmin(s->lo, x);
    s->hi = fmax(s->hi, x);
}
static double st_mean(const stat1 *s) { return s->sum / s->n; }
static double st_sd(const stat1 *s) { return sqrt(fmax(0, s->sum2 / s->n - st_mean(s) * st_mean(s))); }

/* Host-side scalars of labels_to_image over 4000 streams: U(25, 225) means (label 0: U(0, 225)), U(5, 25) SDs
 * (label 0: U(0, 25)), background flag with p = 0.2, gamma exponent exp(N(0, 0.25)), blur sigmas U(eps, 1) shared
 * by a step.  Bounds: 4 standard errors of each estimate. */
static void check_params(vxm_context *ctx)
{
    vxm_synth_options o;
    vxm_synth_options_default(&o);
    stat1 m0 = {0}, m1 = {0}, s0 = {0}, s1 = {0}, blank = {0}, lg = {0}, blur = {0};
    vxm_synth_params *p = malloc(sizeof *p), *q = malloc(sizeof *q);
    int same_step = 1, axes_differ = 0;
    const int N = 4000, L = 3;
    for (int k = 0; k < N; k++) {
        if (vxm_synth_draw_params(ctx, &o, 3, L, 5, (unsigned long long)k, (unsigned long long)(k / 4), p) ||
            vxm_synth_draw_params(ctx, &o, 3, L, 5, (unsigned long long)k + 100000, (unsigned long long)(k / 4), q)) {
            tu_report(0, "synth params", "%s", vxm_context_error(ctx));
            break;
        }
        st_add(&m0, p->mean[0]);
        st_add(&s0, p->sd[0]);
        for (int l = 1; l < L; l++) {
            st_add(&m1, p->mean[l]);
            st_add(&s1, p->sd[l]);
        }
        st_add(&blank, p->blank[0]);
        st_add(&lg, log(p->gamma_expo[0]));
        st_add(&blur, p->blur_sigma[k % 3]);
        same_step &= !memcmp(p->blur_sigma, q->blur_sigma, sizeof p->blur_sigma);
        axes_differ |= p->blur_sigma[0] != p->blur_sigma[1];
    }
    double se_u = 200 / sqrt(12 * m1.n) * 4;
    tu_report(fabs(st_mean(&m1) - 125) < se_u && m1.lo >= 25 && m1.hi < 225, "synth label means U(25, 225)",
              "mean %.2f, range [%.2f, %.2f]", st_mean(&m1), m1.lo, m1.hi);
    tu_report(fabs(st_mean(&m0) - 112.5) < 225 / sqrt(12 * m0.n) * 4 && m0.lo >= 0 && m0.hi < 225,
              "synth background mean U(0, 225)", "mean %.2f, range [%.2f, %.2f]", st_mean(&m0), m0.lo, m0.hi);
    tu_report(fabs(st_mean(&s1) - 15) < 20 / sqrt(12 * s1.n) * 4 && s1.lo >= 5 && s1.hi < 25, "synth label SDs U(5, 25)",
              "mean %.3f, range [%.3f, %.3f]", st_mean(&s1), s1.lo, s1.hi);
    tu_report(fabs(st_mean(&s0) - 12.5) < 25 / sqrt(12 * s0.n) * 4 && s0.lo >= 0 && s0.hi < 25,
              "synth background SD U(0, 25)", "mean %.3f, range [%.3f, %.3f]", st_mean(&s0), s0.lo, s0.hi);
    tu_report(fabs(st_mean(&blank) - 0.2) < 4 * sqrt(0.16 / N), "synth background blanking p = 0.2", "fraction %.4f",
              st_mean(&blank));
    tu_report(fabs(st_mean(&lg)) < 4 * 0.25 / sqrt(N) && fabs(st_sd(&lg) - 0.25) < 4 * 0.25 / sqrt(2.0 * N),
              "synth gamma exp(N(0, 0.25))", "log mean %.4f sd %.4f", st_mean(&lg), st_sd(&lg));
    tu_report(fabs(st_mean(&blur) - 0.5) < 4 / sqrt(12.0 * N) && blur.lo > 0 && blur.hi < 1 && same_step &&
                  axes_differ,
              "synth blur sigmas U(eps, 1) per axis, one draw per step",
              "mean %.4f range [%.2e, %.4f], same for every map of a step: %s", st_mean(&blur), blur.lo, blur.hi,
              same_step ? "yes" : "no");
    free(p);
    free(q);
}

static int alloc_t(vxm_backend *be, int n0, int n1, int n2, int c, vxm_tensor *t)
{
    int sh[3] = {n0, n1, n2};
    return vxm_tensor_alloc(be, sh, c, t) != VXM_OK;
}

static float *download(vxm_backend *be, const vxm_tensor *t)
{
    float *h = malloc(vxm_tensor_numel(t) * sizeof(float));
    if (h && vxm_tensor_download(be, t, h)) {
        free(h);
        h = NULL;
    }
    return h;
}

/* Perlin noise (draw_perlin): scale 1 = the N(0, sd) draws themselves (sd = max with modulate off, as neurite's
 * default actually behaves), two scales add variances, and with a coarse grid the output corners are the grid's
 * corner draws exactly (linspace resize). */
static void check_perlin(vxm_backend *be)
{
    vxm_tensor t = {{0}, 0, NULL}, g = {{0}, 0, NULL};
    char name[128];
    if (alloc_t(be, 1, 256, 256, 1, &t) || alloc_t(be, 1, 16, 16, 1, &g)) {
        tu_report(0, "synth perlin alloc", "%s", vxm_context_error(be->ctx));
        goto done;
    }
    double one = 1, two[2] = {1, 1}, four = 4;
    stat1 s = {0}, s2 = {0};
    float *h = NULL;
    if (!vxm_synth_perlin(be, 2, &one, 1, 0.5, 0, 9, 1, &t) && (h = download(be, &t)))
        for (size_t i = 0; i < vxm_tensor_numel(&t); i++)
            st_add(&s, h[i]);
    free(h);
    h = NULL;
    if (!vxm_synth_perlin(be, 2, two, 2, 0.5, 0, 9, 1, &t) && (h = download(be, &t)))
        for (size_t i = 0; i < vxm_tensor_numel(&t); i++)
            st_add(&s2, h[i]);
    free(h);
    snprintf(name, sizeof name, "synth perlin sd %s", be->spec);
    tu_report(s.n > 0 && fabs(st_sd(&s) - 0.5) < 0.01 && fabs(st_mean(&s)) < 0.01 &&
                  fabs(st_sd(&s2) - 0.5 * sqrt(2)) < 0.015,
              name, "one scale: mean %.4f sd %.4f (want 0.5); two scales sd %.4f (want %.4f)", st_mean(&s), st_sd(&s),
              st_sd(&s2), 0.5 * sqrt(2));
    /* grid ceil(64 / 4) = 16 per axis; output 64x64 */
    vxm_tensor o = {{0}, 0, NULL};
    float *ho = NULL, *hg = NULL;
    if (!alloc_t(be, 1, 64, 64, 1, &o) && !vxm_synth_perlin(be, 2, &four, 1, 2.0, 0, 11, 3, &o) &&
        (ho = download(be, &o)) && !be->ops->rand_fill(be, g.buf, 256, 11, 3 * 16 + 0, 1, 0.0f, 2.0f) &&
        (hg = download(be, &g))) {
        double err = fmax(fmax(fabs(ho[0] - hg[0]), fabs(ho[63] - hg[15])),
                          fmax(fabs(ho[63 * 64] - hg[15 * 16]), fabs(ho[64 * 64 - 1] - hg[255])));
        snprintf(name, sizeof name, "synth perlin grid corners %s", be->spec);
        tu_report(err < 1e-6, name, "corners of the upsampled field vs the grid draws: max |diff| %.2e", err);
    } else {
        tu_report(0, "synth perlin corners", "%s", vxm_context_error(be->ctx));
    }
    free(ho);
    free(hg);
    vxm_tensor_release(be, &o);
done:
    vxm_tensor_release(be, &t);
    vxm_tensor_release(be, &g);
}

typedef struct synth_out {
    float *map, *img, *lab;
} synth_out;

/* A shapes map and one synthetic image from it on `be` (64x64, 8 labels). */
static int run_synth(vxm_backend *be, const vxm_synth_options *o, unsigned long long seed, synth_out *out)
{
    vxm_shapes_options so;
    vxm_shapes_options_default(&so);
    so.nlab = 8;
    vxm_tensor idx = {{0}, 0, NULL}, img = {{0}, 0, NULL}, lab = {{0}, 0, NULL};
    int rc = alloc_t(be, 1, 64, 64, 1, &idx) || alloc_t(be, 1, 64, 64, o->nchan, &img) || alloc_t(be, 1, 64, 64, 1, &lab) ||
             vxm_synth_shapes(be, &so, 2, seed, 1, &idx) ||
             vxm_synth_labels_to_image(be, o, 2, &idx, so.nlab, seed, 2, 0, &img, &lab);
    memset(out, 0, sizeof *out);
    if (!rc && (!(out->map = download(be, &idx)) || !(out->img = download(be, &img)) || !(out->lab = download(be, &lab))))
        rc = 1;
    if (rc)
        tu_report(0, "synth run", "%s: %s", be->spec, vxm_context_error(be->ctx));
    vxm_tensor_release(be, &idx);
    vxm_tensor_release(be, &img);
    vxm_tensor_release(be, &lab);
    return rc;
}

static void free_out(synth_out *o)
{
    free(o->map);
    free(o->img);
    free(o->lab);
}

static void check_images(tb_list *l)
{
    const size_t n = 64 * 64;
    vxm_synth_options o;
    vxm_synth_options_default(&o);
    synth_out ref, again, other;
    vxm_backend *cpu = l->be[0];
    if (run_synth(cpu, &o, 21, &ref) || run_synth(cpu, &o, 21, &again) || run_synth(cpu, &o, 22, &other))
        return;
    int used[8] = {0}, nused = 0, ints = 1;
    float lo = 1e9f, hi = -1e9f;
    size_t moved = 0;
    for (size_t i = 0; i < n; i++) {
        int v = (int)ref.map[i];
        ints &= ref.map[i] == (float)v && v >= 0 && v < 8;
        if (ints && !used[v]++)
            nused++;
        lo = fminf(lo, ref.img[i]);
        hi = fmaxf(hi, ref.img[i]);
        moved += ref.lab[i] != ref.map[i];
    }
    tu_report(ints && nused >= 4, "synth shapes label map", "%d of 8 labels present, integral: %s", nused,
              ints ? "yes" : "no");
    tu_report(lo == 0.0f && hi == 1.0f, "synth image min-max normalised", "range [%g, %g]", lo, hi);
    tu_report(moved > n / 100 && moved < n * 6 / 10, "synth label map deformed",
              "%zu of %zu voxels changed label (want 1 %%..60 %%)", moved, n);
    tu_report(!memcmp(ref.img, again.img, n * sizeof(float)) && !memcmp(ref.lab, again.lab, n * sizeof(float)),
              "synth same seed same image", "CPU, bitwise");
    tu_report(tu_max_abs_diff(ref.img, other.img, n) > 0.1, "synth other seed other image", "max |diff| %.3f",
              tu_max_abs_diff(ref.img, other.img, n));
    free_out(&again);
    free_out(&other);
    /* vel_std 0: no deformation; zero_background 1: label 0 is exactly 0 (blur off: it would spread the labels'
     * intensities into the background, which neurite blanks before blurring) */
    vxm_synth_options z = o;
    z.vel_std = 0;
    z.zero_background = 1;
    z.blur_std = 0;
    synth_out zo;
    if (!run_synth(cpu, &z, 21, &zo)) {
        size_t diff = 0, bg_nonzero = 0;
        for (size_t i = 0; i < n; i++) {
            diff += zo.lab[i] != zo.map[i];
            bg_nonzero += zo.map[i] == 0 && zo.img[i] != 0;
        }
        tu_report(diff == 0 && bg_nonzero == 0, "synth vel-std 0 and background blanking",
                  "%zu voxels moved, %zu background voxels not 0", diff, bg_nonzero);
        free_out(&zo);
    }
    for (int b = 1; b < l->n; b++) {
        synth_out d;
        char name[128];
        if (run_synth(l->be[b], &o, 21, &d))
            continue;
        snprintf(name, sizeof name, "synth %s vs cpu", l->be[b]->spec);
        int maps = !memcmp(d.map, ref.map, n * sizeof(float)), labs = !memcmp(d.lab, ref.lab, n * sizeof(float));
        double e = tu_max_abs_diff(d.img, ref.img, n);
        tu_report(maps && labs && e < 1e-4, name, "shapes map %s, warped labels %s, image max |diff| %.2e",
                  maps ? "bitwise equal" : "DIFFER", labs ? "bitwise equal" : "DIFFER", e);
        free_out(&d);
    }
    free_out(&ref);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    check_blur_taps();
    check_params(ctx);
    for (int b = 0; b < l.n; b++)
        check_perlin(l.be[b]);
    check_images(&l);
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
