/* Centred zero padding and cropping of host volumes: how `vxm register` handles sizes the network cannot
 * take (not multiples of 2^levels).  Zero is the background of skull-stripped, [0, 1]-scaled scans, and it
 * is what VoxelMorph's own load_volfile(pad_shape=...) does (offset int((target - size) / 2) at the start). */
#include <string.h>

#include "core/context.h"

void vxm_padded_shape(int divisor, int ndim, const int shape[3], int out[3])
{
    for (int d = 0; d < 3; d++) {
        int on = d >= 3 - ndim && divisor > 1;
        out[d] = on ? (shape[d] + divisor - 1) / divisor * divisor : shape[d];
    }
}

vxm_status vxm_volume_pad_center(vxm_context *ctx, const vxm_volume *v, const int shape[3], int offset[3],
                                 vxm_volume **out)
{
    *out = NULL;
    for (int d = 0; d < 3; d++) {
        if (shape[d] < v->shape[d])
            return vxm_error(ctx, VXM_ESHAPE, "pad", "target size %d smaller than %d", shape[d], v->shape[d]);
        offset[d] = (shape[d] - v->shape[d]) / 2;
    }
    vxm_volume *p = vxm_volume_new(v->ndim, shape, v->channels);
    if (!p)
        return vxm_error(ctx, VXM_ENOMEM, "pad", "out of memory");
    size_t row = (size_t)v->shape[2] * v->channels;
    for (int i = 0; i < v->shape[0]; i++)
        for (int j = 0; j < v->shape[1]; j++) {
            const float *src = v->data + ((size_t)i * v->shape[1] + j) * row;
            float *dst = p->data + (((size_t)(i + offset[0]) * shape[1] + (j + offset[1])) * shape[2] + offset[2]) *
                                       v->channels;
            memcpy(dst, src, row * sizeof(float));
        }
    *out = p;
    return VXM_OK;
}

vxm_status vxm_volume_crop(vxm_context *ctx, const vxm_volume *v, const int offset[3], const int shape[3],
                           vxm_volume **out)
{
    *out = NULL;
    for (int d = 0; d < 3; d++)
        if (offset[d] < 0 || offset[d] + shape[d] > v->shape[d])
            return vxm_error(ctx, VXM_ESHAPE, "crop", "region outside the volume");
    vxm_volume *c = vxm_volume_new(v->ndim, shape, v->channels);
    if (!c)
        return vxm_error(ctx, VXM_ENOMEM, "crop", "out of memory");
    size_t row = (size_t)shape[2] * v->channels;
    for (int i = 0; i < shape[0]; i++)
        for (int j = 0; j < shape[1]; j++) {
            const float *src = v->data + (((size_t)(i + offset[0]) * v->shape[1] + (j + offset[1])) * v->shape[2] +
                                          offset[2]) * v->channels;
            memcpy(c->data + ((size_t)i * shape[1] + j) * row, src, row * sizeof(float));
        }
    *out = c;
    return VXM_OK;
}
