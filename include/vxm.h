/* vxmcl public API: VoxelMorph registration in C on a plain-C CPU backend or any OpenCL device.
 *
 * Conventions (see ../shared/docs/voxelmorph-semantics.md §1):
 *  - volumes and tensors are channels-last, C order: element (i, j, k, c) of a volume with spatial shape
 *    (n0, n1, n2) and C channels is at ((i*n1 + j)*n2 + k)*C + c.  2-D data uses n0 = 1.
 *  - a dense warp is a displacement in voxels, channel d along spatial axis d ('ij'), pull-back:
 *    moved(x) = moving(x + warp(x)).
 *  - every function returns a vxm_status; on failure a one-line message "subject: problem" is kept in the
 *    context (vxm_context_error).  The library never prints and never exits. */
#ifndef VXM_H
#define VXM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VXM_VERSION_STRING "0.1.0"

typedef enum vxm_status {
    VXM_OK = 0,
    VXM_EIO,          /* file missing, unreadable, write failed */
    VXM_EFORMAT,      /* corrupt or unsupported file content */
    VXM_ESHAPE,       /* shapes that do not fit together */
    VXM_EDEVICE,      /* device / OpenCL failure (build, enqueue, no such device) */
    VXM_ENOMEM,       /* host or device out of memory */
    VXM_EINVAL,       /* bad argument */
    VXM_EUNSUPPORTED, /* valid request that this build cannot do */
    VXM_ENUMERIC      /* NaN / Inf in input or result */
} vxm_status;

const char *vxm_status_name(vxm_status s);

/* ---- context: the only mutable state of the library ------------------------------------------------ */
typedef struct vxm_context vxm_context;

vxm_context *vxm_context_create(void);
void vxm_context_free(vxm_context *ctx);
/* Last error message, "subject: problem" (empty string when none). */
const char *vxm_context_error(const vxm_context *ctx);
void vxm_context_clear_error(vxm_context *ctx);
/* Non-fatal notices for the user, one per line ending in '\n' ("warning: file: problem"; empty when none), e.g.
 * an ignored corrupt OpenCL program cache.  The library never prints them; callers show and clear them. */
const char *vxm_context_notes(const vxm_context *ctx);
void vxm_context_clear_notes(vxm_context *ctx);
/* Number of CPU threads the CPU backend uses (0 = OMP_NUM_THREADS, SLURM_CPUS_PER_TASK, else all cores). */
void vxm_context_set_threads(vxm_context *ctx, int threads);
int vxm_context_threads(const vxm_context *ctx);

/* ---- volumes (host memory) ------------------------------------------------------------------------- */
typedef struct vxm_geometry vxm_geometry; /* opaque: header/affine of the file a volume came from */

typedef struct vxm_volume {
    int ndim;        /* spatial dimensions: 2 or 3 */
    int shape[3];    /* spatial shape; for 2-D, shape[0] == 1 and the image is shape[1] x shape[2] */
    int channels;    /* channels-last */
    float *data;     /* shape[0]*shape[1]*shape[2]*channels floats, C order */
    vxm_geometry *geom; /* may be NULL (npz/npy input) */
} vxm_volume;

vxm_volume *vxm_volume_new(int ndim, const int shape[3], int channels);
void vxm_volume_free(vxm_volume *v);
size_t vxm_volume_numel(const vxm_volume *v);
/* Reads .nii, .nii.gz, .mgz, .mgh, .npz, .npy.  `key` selects the npz array ("vol", "seg", ...); NULL means
 * "vol", else the only array.  Any numeric type is converted to float32; NIfTI scl_slope/inter applied.
 * A trailing axis of size > 1 beyond the spatial ones becomes the channel axis (e.g. warps). */
vxm_status vxm_volume_read(vxm_context *ctx, const char *path, const char *key, vxm_volume **out);
/* Writes by extension; geometry taken from `like` (NULL: vol's own, else a default frame).  The file is
 * written under a temporary name and renamed, so a failure leaves no output behind. */
vxm_status vxm_volume_write(vxm_context *ctx, const char *path, const vxm_volume *vol, const vxm_volume *like);
vxm_geometry *vxm_geometry_clone(const vxm_geometry *g);
/* Next multiple of `divisor` along the ndim image axes. */
void vxm_padded_shape(int divisor, int ndim, const int shape[3], int out[3]);
/* Centred zero padding to `shape` (offset[d] = (shape[d] - v->shape[d]) / 2) and the inverse crop.  The
 * results carry no geometry. */
vxm_status vxm_volume_pad_center(vxm_context *ctx, const vxm_volume *v, const int shape[3], int offset[3],
                                 vxm_volume **out);
vxm_status vxm_volume_crop(vxm_context *ctx, const vxm_volume *v, const int offset[3], const int shape[3],
                           vxm_volume **out);
void vxm_geometry_free(vxm_geometry *g);

/* ---- devices ---------------------------------------------------------------------------------------- */
typedef struct vxm_backend vxm_backend;

/* `spec`: "cpu", "opencl", "opencl:P", "opencl:P:D", "auto", or "gpu:N" (the N-th OpenCL GPU). */
vxm_status vxm_backend_open(vxm_context *ctx, const char *spec, vxm_backend **out);
void vxm_backend_close(vxm_backend *be);
const char *vxm_backend_describe(const vxm_backend *be); /* e.g. "opencl:0:0 (Portable Computing Language / cpu-...)" */
/* Writes one line per device (CPU backend first, then every OpenCL platform/device) into buf. */
vxm_status vxm_devices_list(vxm_context *ctx, char *buf, size_t buflen);

/* ---- models ------------------------------------------------------------------------------------------ */
typedef struct vxm_model vxm_model;

vxm_status vxm_model_load(vxm_context *ctx, const char *path, vxm_model **out);
void vxm_model_free(vxm_model *m);
/* Human-readable architecture, parameter count and FLOPs for the given input shape. */
vxm_status vxm_model_describe(vxm_context *ctx, const vxm_model *m, int ndim, const int shape[3],
                              char *buf, size_t buflen);

/* Every input size must be a multiple of this (2^number of U-Net poolings; 16 for the published models). */
int vxm_model_size_divisor(const vxm_model *m);
/* The input shape stored in the model file (VxmDense `inshape`); non-zero status when it has none. */
vxm_status vxm_model_stored_shape(const vxm_model *m, int *ndim, int shape[3]);
/* HyperMorph (HyperVxmDense) models: 1, the number of hyper-parameters their registrations need (the
 * regularisation weight); 0 for every other model. */
int vxm_model_hyper_params(const vxm_model *m);
/* HyperMorph: the regularisation weight lambda in [0, 1] that vxm_register feeds the hypernetwork (required before
 * registering with such a model).  VXM_EINVAL naming the model for any other model or a lambda outside [0, 1]. */
vxm_status vxm_model_set_hyper(vxm_context *ctx, vxm_model *m, double lambda);

typedef struct vxm_register_options {
    int deterministic;  /* probabilistic models: 1 = mean mode (default), 0 = sample with `seed` */
    uint64_t seed;
    const char *moving_name, *fixed_name; /* used in error messages (e.g. file names); NULL: generic */
} vxm_register_options;

/* Registers moving to fixed.  *moved gets the warped moving image, *warp (if warp != NULL) the full-resolution
 * displacement (shape of fixed, ndim channels), both with the fixed image's geometry.  Sizes that are not
 * multiples of vxm_model_size_divisor are zero-padded (centred) for the network; the warp is cropped back and
 * the moved image is the original moving image resampled with it, so `vxm_warp_volume(moving, warp)` gives
 * exactly *moved. */
vxm_status vxm_register(vxm_context *ctx, vxm_backend *be, const vxm_model *m, const vxm_volume *moving,
                        const vxm_volume *fixed, const vxm_register_options *opt, vxm_volume **moved,
                        vxm_volume **warp);

/* Warps `img` with a dense displacement `warp` (ndim channels, spatial shape of the output) by linear or
 * nearest (round half to even) interpolation with border clamping (spec §4). *out gets warp's geometry. */
vxm_status vxm_warp_volume(vxm_context *ctx, vxm_backend *be, const vxm_volume *img, const vxm_volume *warp,
                           int nearest, vxm_volume **out);

/* Hard Dice per label (spec §9.3): 2|A∩B| / (|A|+|B|), 0 when a label is absent from both.  Label maps are
 * float volumes holding integer values. */
vxm_status vxm_dice(vxm_context *ctx, const vxm_volume *a, const vxm_volume *b, const int *labels, int nlabels,
                    double *dice);

/* Cross-check: runs the model on `be` and on `ref` (normally the CPU backend) in lockstep and reports, per
 * graph node, the largest absolute difference and that difference relative to the reference's largest
 * magnitude.  *diffs is malloc'ed (free with free()). */
typedef struct vxm_layer_diff {
    char name[96];
    char op[16];
    int shape[3], channels;
    double max_abs, ref_max_abs, rel;
} vxm_layer_diff;

vxm_status vxm_register_check(vxm_context *ctx, vxm_backend *be, vxm_backend *ref, const vxm_model *m,
                              const vxm_volume *moving, const vxm_volume *fixed, vxm_layer_diff **diffs,
                              int *ndiffs);

/* ==== evaluation (src/eval): Jacobian determinant and QC picture ======================================= */

/* det J of x -> x + warp(x) per voxel (spec §9.3, voxelmorph/py/utils.py jacobian_determinant): finite
 * differences as np.gradient (central inside, one-sided first order at the borders; an axis of size 1
 * contributes no displacement derivative), matrix rows = derivative axis, columns = component, computed in
 * double.  `warp`: 2-D with 2 channels or 3-D with 3 channels, finite values.
 * vxm_jacobian_determinant: *det = single-channel float32 volume (warp's shape and geometry);
 * vxm_jacobian_determinant_f64: *det = malloc'ed doubles in C order over the spatial shape (free()). */
vxm_status vxm_jacobian_determinant(vxm_context *ctx, const vxm_volume *warp, vxm_volume **det);
vxm_status vxm_jacobian_determinant_f64(vxm_context *ctx, const vxm_volume *warp, double **det);

typedef struct vxm_jacobian_summary {
    size_t voxels;      /* number of voxels */
    size_t nonpositive; /* voxels with det J <= 0 (folding) */
    double fraction;    /* nonpositive / voxels */
    double min, max, mean;
} vxm_jacobian_summary;

/* Summary of det J (computed in double, nothing stored). */
vxm_status vxm_jacobian_stats(vxm_context *ctx, const vxm_volume *warp, vxm_jacobian_summary *s);
/* Voxels of a det J volume (from vxm_jacobian_determinant) with det <= 0. */
size_t vxm_jacobian_count_nonpositive(const vxm_volume *det);

/* Writes a quality-control PNG: one row per middle slice (3 orthogonal slices for 3-D, the image for 2-D);
 * columns fixed, moving, moved, fixed/moved checkerboard, |fixed - moving|, |fixed - moved| and, when `warp`
 * is not NULL, the identity grid deformed by the in-plane components of the warp (drawn over the moving
 * image) and a det J map (black = 1, red = expansion, blue = contraction, green = det J <= 0).  Images are
 * scaled to 8 bits by their own 1st..99th percentiles (channel 0).  All volumes must share one spatial
 * shape.  Written to a temporary file and renamed: a failure leaves no file. */
vxm_status vxm_qc_png(vxm_context *ctx, const char *path, const vxm_volume *fixed, const vxm_volume *moving,
                      const vxm_volume *moved, const vxm_volume *warp);

#ifdef __cplusplus
}
#endif
#endif
