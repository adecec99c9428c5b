/* vxm_warp_volume: apply a stored displacement to an image or label map (spec §4, scripts/tf/warp.py). */
#include <string.h>

#include "backend.h"
#include "io/volume_ext.h"

vxm_status vxm_warp_volume(vxm_context *ctx, vxm_backend *be, const vxm_volume *img, const vxm_volume *warp,
                           int nearest, vxm_volume **out)
{
    *out = NULL;
    /* A 2-D warp saved as an (H, W, 2) array reads back as a thin 3-D volume; with a 2-D image it can only
     * mean the 2-D field, so view it as one (no copy). */
    vxm_volume view = *warp;
    if (img->ndim == 2 && vxm_volume_as_2d_channels(&view))
        warp = &view;
    if (img->ndim != warp->ndim || warp->channels != warp->ndim)
        return vxm_error(ctx, VXM_ESHAPE, "warp", "a %d-D image needs a warp with %d channels (got %d-D, %d channels)",
                         img->ndim, img->ndim, warp->ndim, warp->channels);
    vxm_tensor ti = {{0}, 0, NULL}, tw = ti, ty = ti;
    vxm_volume *y = vxm_volume_new(img->ndim, warp->shape, img->channels);
    if (!y)
        return vxm_error(ctx, VXM_ENOMEM, "warp", "out of memory");
    vxm_status st = vxm_tensor_alloc(be, img->shape, img->channels, &ti);
    if (!st)
        st = vxm_tensor_upload(be, &ti, img->data);
    if (!st)
        st = vxm_tensor_alloc(be, warp->shape, warp->channels, &tw);
    if (!st)
        st = vxm_tensor_upload(be, &tw, warp->data);
    if (!st)
        st = vxm_tensor_alloc(be, warp->shape, img->channels, &ty);
    if (!st)
        st = be->ops->spatial_transform(be, &ti, &tw, img->ndim, nearest ? VXM_INTERP_NEAREST : VXM_INTERP_LINEAR, 0,
                                         0.0f, &ty);
    if (!st)
        st = vxm_tensor_download(be, &ty, y->data);
    if (!st && warp->geom && !(y->geom = vxm_geometry_clone(warp->geom)))
        st = vxm_error(ctx, VXM_ENOMEM, "warp", "out of memory");
    vxm_tensor_release(be, &ti);
    vxm_tensor_release(be, &tw);
    vxm_tensor_release(be, &ty);
    if (st) {
        vxm_volume_free(y);
        return st;
    }
    *out = y;
    return VXM_OK;
}
