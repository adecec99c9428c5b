/* SynthMorph's label-map-to-image model (training doc §6.3, neurite labels_to_image as train_synthmorph.py calls
 * it), composed from backend ops so that it runs on every device.  Step numbers below are those of §6.3. */
#include "synth/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/counter_rng.h"
#include "core/rng.h"

/* Sub-streams of one map's stream: per-voxel draws of the SVF scales, the intensity noise and the bias scales,
 * and one host generator for the per-image scalars. */
enum { SUB_VEL = 0, SUB_NOISE = 8, SUB_BIAS = 9, SUB_HOST = 15, SUB_COUNT = 16 };

void vxm_synth_options_default(vxm_synth_options *o)
{
    memset(o, 0, sizeof *o);
    o->vel_std = 0.5;
    o->vel_res[0] = 16;
    o->n_vel_res = 1;
    o->blur_std = 1;
    o->bias_std = 0.3;
    o->bias_res[0] = 40;
    o->n_bias_res = 1;
    o->gamma_std = 0.25;
    o->zero_background = 0.2;
    o->nchan = 1;
}

void vxm_shapes_options_default(vxm_shapes_options *o)
{
    o->nlab = 26;
    o->noise_res = 16;
    o->warp_std = 8;
    o->warp_res = 32;
}

static unsigned long long host_seed(unsigned long long seed, unsigned long long stream)
{
    return vxm_counter_key(seed, stream * SUB_COUNT + SUB_HOST);
}

vxm_status vxm_synth_perlin(vxm_backend *be, int ndim, const double *scales, int nscales, double max_std,
                            int modulate, unsigned long long seed, unsigned long long stream, vxm_tensor *out)
{
    const vxm_backend_ops *op = be->ops;
    unsigned long long hs = vxm_counter_key(seed, stream * SUB_COUNT + SUB_HOST - 1);
    vxm_status st = op->fill(be, out->buf, vxm_tensor_numel(out), 0.0f);
    for (int k = 0; k < nscales && !st; k++) {
        /* sample_shape = ceil(out / scale) per image axis (augment.py l.60) */
        vxm_tensor g = {{1, 1, 1}, out->channels, NULL}, up = {{0}, 0, NULL};
        for (int d = 3 - ndim; d < 3; d++)
            g.shape[d] = (int)ceil(out->shape[d] / scales[k]);
        double sd = modulate ? max_std * vxm_rng_uniform(&hs) : max_std;
        if ((st = vxm_tensor_alloc(be, g.shape, g.channels, &g)))
            break;
        st = op->rand_fill(be, g.buf, vxm_tensor_numel(&g), seed, stream * SUB_COUNT + SUB_VEL + (unsigned)k, 1, 0.0f,
                           (float)sd);
        if (!st && scales[k] == 1.0) {
            st = op->add(be, out, &g, out);
        } else if (!st) {
            /* ne.utils.resize with zoom out/sample: the linspace (align-corners) mapping onto the output grid */
            float f[3] = {1, 1, 1};
            if (!(st = vxm_tensor_alloc(be, out->shape, out->channels, &up)) &&
                !(st = op->resize_linear(be, &g, VXM_RESIZE_LINSPACE, f, &up)))
                st = op->add(be, out, &up, out);
            vxm_tensor_release(be, &up);
        }
        vxm_tensor_release(be, &g);
    }
    return st;
}

int vxm_synth_gauss_taps(double sigma, double blur_std, float *taps, int max_taps)
{
    /* utils.gaussian_kernel: width round(3 * max sigma) * 2 + 1 from the UPPER bound, taps of the drawn sigma */
    int r = (int)nearbyint(3.0 * blur_std);
    int n = 2 * r + 1;
    if (n > max_taps)
        return -1;
    float sum = 0;
    for (int i = 0; i < n; i++) {
        float x = (float)(i - r);
        taps[i] = expf(-0.5f * x * x / (float)(sigma * sigma));
        sum += taps[i];
    }
    for (int i = 0; i < n; i++)
        taps[i] /= sum;
    return n;
}

/* Steps 2-4: SVF noise at half resolution, VecInt(5), x2, linear resize x2, nearest warp of the index map with
 * fill 0. */
static vxm_status deform_labels(vxm_backend *be, const vxm_synth_options *o, int ndim, const vxm_tensor *index_map,
                                unsigned long long seed, unsigned long long stream, vxm_tensor *warped)
{
    const vxm_backend_ops *op = be->ops;
    int half[3];
    double scales[VXM_SYNTH_MAX_RES];
    for (int d = 0; d < 3; d++)
        half[d] = d >= 3 - ndim ? index_map->shape[d] / 2 : index_map->shape[d];
    for (int k = 0; k < o->n_vel_res; k++)
        scales[k] = o->vel_res[k] / 2; /* vel_scale = warp_res / 2 (models.py l.786) */
    vxm_tensor v = {{0}, 0, NULL}, w = {{0}, 0, NULL}, full = {{0}, 0, NULL};
    vxm_status st = vxm_tensor_alloc(be, half, ndim, &v);
    if (!st)
        st = vxm_synth_perlin(be, ndim, scales, o->n_vel_res, o->vel_std, o->modulate, seed, stream, &v);
    if (!st && !(st = vxm_tensor_alloc(be, half, ndim, &w)))
        st = op->vecint(be, &v, ndim, 5, &w); /* VecInt(int_steps=5), fixed in labels_to_image */
    if (!st)
        st = op->scale(be, &w, 2.0f, &w); /* RescaleValues(2) */
    if (!st && !(st = vxm_tensor_alloc(be, index_map->shape, ndim, &full))) {
        float f[3] = {2, 2, 2};
        st = op->resize_linear(be, &w, VXM_RESIZE_LINSPACE, f, &full); /* Resize(2, 'linear') */
    }
    if (!st)
        st = op->spatial_transform(be, index_map, &full, ndim, VXM_INTERP_NEAREST, 1, 0.0f, warped);
    vxm_tensor_release(be, &v);
    vxm_tensor_release(be, &w);
    vxm_tensor_release(be, &full);
    return st;
}

vxm_status vxm_synth_draw_params(vxm_context *ctx, const vxm_synth_options *o, int ndim, int nlab,
                                 unsigned long long seed, unsigned long long stream, unsigned long long step_stream,
                                 vxm_synth_params *p)
{
    if (o->nchan < 1 || o->nchan > VXM_SYNTH_MAX_CHAN || nlab < 1 || (size_t)o->nchan * (size_t)nlab > VXM_SYNTH_MAX_LAB)
        return vxm_error(ctx, VXM_EINVAL, "synth", "%d labels x %d channels: at most %d", nlab, o->nchan,
                         VXM_SYNTH_MAX_LAB);
    unsigned long long hs = host_seed(seed, stream);
    /* steps 5-6 (models.py l.812-846): means, then SDs, then the background flags */
    for (int c = 0; c < o->nchan; c++)
        for (int l = 0; l < nlab; l++)
            p->mean[c * nlab + l] = (float)((l ? 25.0 : 0.0) + (225.0 - (l ? 25.0 : 0.0)) * vxm_rng_uniform(&hs));
    for (int c = 0; c < o->nchan; c++)
        for (int l = 0; l < nlab; l++)
            p->sd[c * nlab + l] = (float)((l ? 5.0 : 0.0) + (25.0 - (l ? 5.0 : 0.0)) * vxm_rng_uniform(&hs));
    for (int c = 0; c < o->nchan; c++)
        p->blank[c] = vxm_rng_uniform(&hs) < o->zero_background;
    /* step 9: gamma per channel */
    for (int c = 0; c < o->nchan; c++)
        p->gamma_expo[c] = o->gamma_std > 0 ? (float)exp(o->gamma_std * vxm_rng_normal(&hs)) : 1.0f;
    /* step 7: the blur widths, once per step (utils.gaussian_kernel: U(eps_f32, blur_std) per axis) */
    unsigned long long bs = host_seed(seed, step_stream ^ 0xB1B1B1B1ULL);
    for (int d = 0; d < 3; d++)
        p->blur_sigma[d] = 0;
    for (int d = 3 - ndim; d < 3; d++) {
        double lo = 1.1920928955078125e-07;
        p->blur_sigma[d] = lo + (o->blur_std - lo) * vxm_rng_uniform(&bs);
    }
    return VXM_OK;
}

#define MAX_TAPS 64

vxm_status vxm_synth_labels_to_image(vxm_backend *be, const vxm_synth_options *o, int ndim,
                                     const vxm_tensor *index_map, int nlab, unsigned long long seed,
                                     unsigned long long stream, unsigned long long step_stream, vxm_tensor *image,
                                     vxm_tensor *warped_index)
{
    const vxm_backend_ops *op = be->ops;
    for (int d = 3 - ndim; d < 3; d++)
        if (index_map->shape[d] % 2)
            return vxm_error(be->ctx, VXM_ESHAPE, "synth",
                             "label maps need even sizes (SynthMorph draws its field at half size): %d", index_map->shape[d]);
    if (o->nchan < 1 || o->nchan > 16 || nlab < 1 || nlab > 4096 || o->n_vel_res < 0 || o->n_bias_res < 0)
        return vxm_error(be->ctx, VXM_EINVAL, "synth", "bad synthesis options");
    vxm_status st = VXM_OK;
    vxm_tensor lab = {{0}, 0, NULL}, tmp = {{0}, 0, NULL}, bias = {{0}, 0, NULL};
    vxm_synth_params *p = malloc(sizeof *p);
    if (!p)
        return vxm_error(be->ctx, VXM_ENOMEM, "synth", "out of memory");
    if ((st = vxm_synth_draw_params(be->ctx, o, ndim, nlab, seed, stream, step_stream, p))) {
        free(p);
        return st;
    }
    if (o->vel_std > 0) {
        if (!(st = vxm_tensor_alloc(be, index_map->shape, 1, &lab)))
            st = deform_labels(be, o, ndim, index_map, seed, stream, &lab);
    } else {
        lab = *index_map; /* borrowed */
    }
    /* steps 5-6: per-label Gaussian intensities, one noise field for all channels, background blanking */
    if (!st)
        st = op->labels_to_intensity(be, &lab, nlab, p->mean, p->sd, p->blank, seed, stream * SUB_COUNT + SUB_NOISE,
                                     image);
    /* step 7: separable blur, sigma_d ~ U(eps, blur_std) per axis, drawn once per step (all batch elements);
     * the passes alternate between the image and a scratch tensor */
    if (!st && o->blur_std > 0 && !(st = vxm_tensor_alloc(be, image->shape, image->channels, &tmp))) {
        vxm_tensor cur = *image, other = tmp;
        for (int d = 3 - ndim; d < 3 && !st; d++) {
            float taps[MAX_TAPS];
            int n = vxm_synth_gauss_taps(p->blur_sigma[d], o->blur_std, taps, MAX_TAPS);
            if (n < 0)
                st = vxm_error(be->ctx, VXM_EINVAL, "synth", "--blur-std %g is too wide", o->blur_std);
            else if (!(st = op->conv_axis(be, &cur, d, taps, n, &other))) {
                vxm_tensor t = cur;
                cur = other;
                other = t;
            }
        }
        if (!st && cur.buf != image->buf)
            st = op->scale(be, &cur, 1.0f, image);
    }
    /* step 8: multiplicative bias field exp(Perlin(bias_res, bias_std)) */
    if (!st && o->bias_std > 0 && !(st = vxm_tensor_alloc(be, image->shape, 1, &bias))) {
        if (!(st = vxm_synth_perlin(be, ndim, o->bias_res, o->n_bias_res, o->bias_std, o->modulate, seed,
                                    stream * SUB_COUNT + SUB_BIAS, &bias)))
            st = op->mul_exp(be, image, &bias, image);
    }
    /* step 9: clip to [0, 255], min-max normalise over the whole image, gamma exp(N(0, gamma_std)) per channel */
    if (!st) {
        float mm[2];
        if (!(st = op->minmax(be, image, mm))) {
            float lo = fminf(fmaxf(mm[0], 0.0f), 255.0f), hi = fminf(fmaxf(mm[1], 0.0f), 255.0f);
            st = op->normalize_gamma(be, image, lo, hi, p->gamma_expo, image);
        }
    }
    if (!st && warped_index)
        st = op->scale(be, &lab, 1.0f, warped_index);
    if (o->vel_std > 0)
        vxm_tensor_release(be, &lab);
    vxm_tensor_release(be, &tmp);
    vxm_tensor_release(be, &bias);
    free(p);
    return st;
}
