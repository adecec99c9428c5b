#include "backend.h"

vxm_status vxm_tensor_alloc(vxm_backend *be, const int shape[3], int channels, vxm_tensor *t)
{
    for (int d = 0; d < 3; d++)
        t->shape[d] = shape[d];
    t->channels = channels;
    t->buf = NULL;
    size_t n = vxm_tensor_numel(t);
    if (n == 0)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "empty tensor %dx%dx%dx%d", shape[0], shape[1], shape[2],
                         channels);
    return be->ops->buffer_alloc(be, n, &t->buf);
}

void vxm_tensor_release(vxm_backend *be, vxm_tensor *t)
{
    if (t && t->buf) {
        be->ops->buffer_free(be, t->buf);
        t->buf = NULL;
    }
}

vxm_status vxm_tensor_upload(vxm_backend *be, vxm_tensor *t, const float *host)
{
    return be->ops->buffer_write(be, t->buf, host, vxm_tensor_numel(t));
}

vxm_status vxm_tensor_download(vxm_backend *be, const vxm_tensor *t, float *host)
{
    return be->ops->buffer_read(be, t->buf, host, vxm_tensor_numel(t));
}
