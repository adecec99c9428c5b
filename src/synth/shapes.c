/* Random "shapes" label maps from noise (SynthMorph paper §2.3: smooth noise images per label, warped, arg-max;
 * the upstream generator is not public).  Our parameters: nlab Perlin noise images (N(0, 1) on grids
 * ceil(n / noise_res) and ceil(n / (noise_res / 2)) per axis, linearly upsampled and summed: blobs of about
 * noise_res voxels with irregular borders), arg-max over labels, then one random smooth deformation of the label
 * map (SVF noise SD warp_std at scale warp_res, integrated in 5 steps, nearest interpolation).  Warping the
 * arg-max instead of every noise image gives the same kind of shapes with one warp instead of nlab. */
#include "synth/synth.h"

#include "core/counter_rng.h"

enum { SUB_NOISE = 0, SUB_WARP = 1, SUB_COUNT = 2 };

vxm_status vxm_synth_shapes(vxm_backend *be, const vxm_shapes_options *o, int ndim, unsigned long long seed,
                            unsigned long long stream, vxm_tensor *index_map)
{
    const vxm_backend_ops *op = be->ops;
    if (o->nlab < 2 || o->nlab > 4096 || !(o->noise_res >= 1) || !(o->warp_res >= 1) || !(o->warp_std >= 0))
        return vxm_error(be->ctx, VXM_EINVAL, "shapes", "bad shapes options (%d labels)", o->nlab);
    vxm_tensor noise = {{0}, 0, NULL}, argmax = {{0}, 0, NULL}, v = {{0}, 0, NULL}, w = {{0}, 0, NULL};
    double scales[2] = {o->noise_res, o->noise_res / 2 >= 1 ? o->noise_res / 2 : 1};
    vxm_status st = vxm_tensor_alloc(be, index_map->shape, o->nlab, &noise);
    if (!st)
        st = vxm_synth_perlin(be, ndim, scales, 2, 1.0, 0, seed, stream * SUB_COUNT + SUB_NOISE, &noise);
    if (!st && o->warp_std <= 0) {
        st = op->argmax_channels(be, &noise, index_map);
    } else if (!st && !(st = vxm_tensor_alloc(be, index_map->shape, 1, &argmax)) &&
               !(st = op->argmax_channels(be, &noise, &argmax))) {
        vxm_tensor_release(be, &noise);
        double ws = o->warp_res;
        if (!(st = vxm_tensor_alloc(be, index_map->shape, ndim, &v)) &&
            !(st = vxm_synth_perlin(be, ndim, &ws, 1, o->warp_std, 0, seed, stream * SUB_COUNT + SUB_WARP, &v)) &&
            !(st = vxm_tensor_alloc(be, index_map->shape, ndim, &w)) && !(st = op->vecint(be, &v, ndim, 5, &w)))
            st = op->spatial_transform(be, &argmax, &w, ndim, VXM_INTERP_NEAREST, 0, 0.0f, index_map);
    }
    vxm_tensor_release(be, &noise);
    vxm_tensor_release(be, &argmax);
    vxm_tensor_release(be, &v);
    vxm_tensor_release(be, &w);
    return st;
}
