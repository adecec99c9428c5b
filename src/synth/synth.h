/* Internal: SynthMorph's generative model on the device (training doc §6.3: neurite's labels_to_image as
 * train_synthmorph.py calls it) and random "shapes" label maps made from noise (no input data at all).
 *
 * Every per-voxel random number comes from the backends' counter-based streams (backend.h rand_fill,
 * labels_to_intensity), every per-image scalar (standard deviations, label means, blur widths, gamma) from
 * core/rng.h seeded by the same (seed, stream): CPU and OpenCL synthesise the same label maps and, within float
 * rounding, the same images.  Streams: one `stream` number per synthesised map (e.g. (step, sample, which)), and a
 * `step_stream` for what neurite draws once per batch (the blur widths). */
#ifndef VXM_SYNTH_SYNTH_H
#define VXM_SYNTH_SYNTH_H

#include "backend.h"

#define VXM_SYNTH_MAX_RES 8

typedef struct vxm_synth_options {
    double vel_std;                  /* --vel-std 0.5: SD of the SVF noise */
    double vel_res[VXM_SYNTH_MAX_RES]; /* --vel-res 16: scales of the SVF noise, relative to the output shape */
    int n_vel_res;
    double blur_std;  /* --blur-std 1: upper bound of the per-axis blur SD */
    double bias_std;  /* --bias-std 0.3: SD of the log bias field */
    double bias_res[VXM_SYNTH_MAX_RES]; /* --bias-res 40 */
    int n_bias_res;
    double gamma_std;       /* --gamma 0.25 */
    double zero_background; /* 0.2: probability that label 0 is blanked (per channel) */
    int nchan;              /* image channels (1) */
    /* neurite's draw_perlin ignores its callers' "modulate" request (`if not modulate: min_std = max_std` with
     * modulate=None), so the SVF and bias SDs are always the maximum.  Set to draw them from U(0, max) as
     * labels_to_image documents. */
    int modulate;
} vxm_synth_options;

void vxm_synth_options_default(vxm_synth_options *o);

/* Every per-image scalar labels_to_image draws (on the host, from (seed, stream); the blur widths from (seed,
 * step_stream)): exposed so that tests can check their distributions. */
#define VXM_SYNTH_MAX_LAB 4096
#define VXM_SYNTH_MAX_CHAN 16
typedef struct vxm_synth_params {
    float mean[VXM_SYNTH_MAX_LAB]; /* [c * nlab + l]: U(25, 225), label index 0: U(0, 225) */
    float sd[VXM_SYNTH_MAX_LAB];   /* U(5, 25), label index 0: U(0, 25) */
    int blank[VXM_SYNTH_MAX_CHAN]; /* per channel: label 0 set to 0, probability zero_background */
    double blur_sigma[3];          /* per image axis: U(eps_f32, blur_std) */
    float gamma_expo[VXM_SYNTH_MAX_CHAN]; /* exp(N(0, gamma_std)) per channel */
} vxm_synth_params;

/* Fills p; VXM_EINVAL (message in be's context) when nchan * nlab exceeds the tables. */
vxm_status vxm_synth_draw_params(vxm_context *ctx, const vxm_synth_options *o, int ndim, int nlab,
                                 unsigned long long seed, unsigned long long stream, unsigned long long step_stream,
                                 vxm_synth_params *p);

/* labels_to_image for one map: `index_map` holds input-label indices 0..nlab-1 (one channel, the output shape;
 * even sizes on the image axes, as neurite requires).  Writes the synthetic image (index_map's shape, o->nchan
 * channels, allocated by the caller) and the warped index map (one channel, allocated by the caller; NULL when
 * not wanted).  Fails with VXM_ESHAPE for odd sizes. */
vxm_status vxm_synth_labels_to_image(vxm_backend *be, const vxm_synth_options *o, int ndim,
                                     const vxm_tensor *index_map, int nlab, unsigned long long seed,
                                     unsigned long long stream, unsigned long long step_stream, vxm_tensor *image,
                                     vxm_tensor *warped_index);

/* Random "shapes" label maps (SynthMorph paper, §2.3 "label maps from noise"; the upstream code is not public):
 * nlab smooth noise images, each warped by its own random field, arg-max over them.  Parameters below. */
typedef struct vxm_shapes_options {
    int nlab;          /* --nb-labels 26 (the paper's J) */
    double noise_res;  /* 16: the noise is drawn on a grid ceil(n / noise_res) per axis and upsampled */
    double warp_std;   /* 8: SD of each label's SVF noise (voxels, before integration) */
    double warp_res;   /* 32: scale of that SVF noise */
} vxm_shapes_options;

void vxm_shapes_options_default(vxm_shapes_options *o);

/* Writes a label map of indices 0..nlab-1 (one channel, `index_map`'s shape, allocated by the caller). */
vxm_status vxm_synth_shapes(vxm_backend *be, const vxm_shapes_options *o, int ndim, unsigned long long seed,
                            unsigned long long stream, vxm_tensor *index_map);

/* Perlin noise as draw_perlin (neurite augment.py): for each scale s, N(0, sd) on a grid ceil(n_d / s) per image
 * axis (sd = max_std, or U(0, max_std) with modulate), resized (linspace) to the output and summed.  `out` gives
 * shape and channels.  Streams key(seed, stream, k) for scale k. */
vxm_status vxm_synth_perlin(vxm_backend *be, int ndim, const double *scales, int nscales, double max_std,
                            int modulate, unsigned long long seed, unsigned long long stream, vxm_tensor *out);

/* §6.3 item 7 taps: exp(-x^2 / (2 sigma^2)) for x = -r..r, normalised to sum 1 (r = round(3 * blur_std)). */
int vxm_synth_gauss_taps(double sigma, double blur_std, float *taps, int max_taps);

#endif
