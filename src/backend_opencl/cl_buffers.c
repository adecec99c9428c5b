/* Device buffers, scratch buffers, kernel arguments and launches of the OpenCL backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_opencl/cl_internal.h"

vxm_status vxm_cl_buffer_alloc(vxm_backend *be, size_t nfloats, vxm_buffer **out)
{
    vxm_cl *cl = vxm_cl_of(be);
    *out = NULL;
    if (nfloats == 0)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "buffer of 0 floats");
    if (nfloats > (size_t)-1 / sizeof(float) || (cl_ulong)nfloats * sizeof(float) > cl->max_alloc)
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec,
                         "buffer of %zu floats (%llu bytes) exceeds the device's largest allocation "
                         "CL_DEVICE_MAX_MEM_ALLOC_SIZE = %llu bytes",
                         nfloats, (unsigned long long)nfloats * 4ull, (unsigned long long)cl->max_alloc);
    if (cl->fault_alloc && ++cl->nalloc == cl->fault_alloc)
        return vxm_cl_fail(be, CL_MEM_OBJECT_ALLOCATION_FAILURE, 1, "clCreateBuffer (injected by VXM_OPENCL_FAULT)");
    vxm_buffer *b = malloc(sizeof *b);
    if (!b)
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of host memory");
    b->view = 0;
    if (vxm_cl_pool_take(cl, nfloats, b)) {
        cl->live_buffers++;
        vxm_backend_mem_add(be, b->nfloats * sizeof(float));
        *out = b;
        return VXM_OK;
    }
    cl_int err;
    b->mem = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, nfloats * sizeof(float), NULL, &err);
    if (!b->mem && cl->npool > 0) { /* the pooled buffers may be what the device is missing */
        vxm_cl_pool_flush(cl);
        b->mem = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, nfloats * sizeof(float), NULL, &err);
    }
    if (!b->mem) {
        free(b);
        char what[96];
        snprintf(what, sizeof what, "clCreateBuffer(%zu bytes)", nfloats * sizeof(float));
        return vxm_cl_fail(be, err, 1, what);
    }
    b->nfloats = nfloats;
    cl->live_buffers++;
    vxm_backend_mem_add(be, nfloats * sizeof(float));
    *out = b;
    return VXM_OK;
}

vxm_status vxm_cl_buffer_view(vxm_backend *be, vxm_buffer *parent, size_t offset, size_t nfloats, vxm_buffer **out)
{
    *out = NULL;
    if (!parent || offset > parent->nfloats || nfloats > parent->nfloats - offset || nfloats == 0 ||
        offset % be->view_align)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "view of floats %zu..%zu of a buffer of %zu", offset,
                         offset + nfloats, parent ? parent->nfloats : 0);
    vxm_buffer *b = malloc(sizeof *b);
    if (!b)
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of host memory");
    cl_buffer_region region = {offset * sizeof(float), nfloats * sizeof(float)};
    cl_int err;
    b->mem = clCreateSubBuffer(parent->mem, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
    if (!b->mem) {
        free(b);
        return vxm_cl_fail(be, err, 0, "clCreateSubBuffer");
    }
    b->nfloats = nfloats;
    b->view = 1;
    vxm_cl_of(be)->live_buffers++;
    *out = b;
    return VXM_OK;
}

void vxm_cl_buffer_free(vxm_backend *be, vxm_buffer *buf)
{
    if (!buf)
        return;
    if (buf->view) { /* the parent keeps the storage; in-order queue: pending users keep the sub-buffer alive */
        vxm_cl_of(be)->live_buffers--;
        clReleaseMemObject(buf->mem);
        free(buf);
        return;
    }
    /* Pooled or released now.  Either is safe with commands still queued: the queue is in order, so a later user
     * of a pooled buffer runs after them, and OpenCL keeps released storage until they complete. */
    vxm_cl_of(be)->live_buffers--;
    vxm_backend_mem_sub(be, buf->nfloats * sizeof(float));
    if (buf->mem && !vxm_cl_pool_give(vxm_cl_of(be), buf))
        clReleaseMemObject(buf->mem);
    free(buf);
}

vxm_status vxm_cl_buffer_write(vxm_backend *be, vxm_buffer *dst, const float *src, size_t nfloats)
{
    if (!dst || nfloats > dst->nfloats)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "write of %zu floats into a buffer of %zu", nfloats,
                         dst ? dst->nfloats : 0);
    if (nfloats == 0)
        return VXM_OK;
    cl_int err = clEnqueueWriteBuffer(vxm_cl_of(be)->queue, dst->mem, CL_TRUE, 0, nfloats * sizeof(float), src, 0,
                                      NULL, NULL);
    return err == CL_SUCCESS ? VXM_OK : vxm_cl_fail(be, err, 0, "clEnqueueWriteBuffer");
}

vxm_status vxm_cl_buffer_read(vxm_backend *be, const vxm_buffer *src, float *dst, size_t nfloats)
{
    if (!src || nfloats > src->nfloats)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "read of %zu floats from a buffer of %zu", nfloats,
                         src ? src->nfloats : 0);
    if (nfloats == 0)
        return VXM_OK;
    cl_int err = clEnqueueReadBuffer(vxm_cl_of(be)->queue, src->mem, CL_TRUE, 0, nfloats * sizeof(float), dst, 0,
                                     NULL, NULL);
    return err == CL_SUCCESS ? VXM_OK : vxm_cl_fail(be, err, 0, "clEnqueueReadBuffer");
}

vxm_status vxm_cl_finish(vxm_backend *be)
{
    cl_int err = clFinish(vxm_cl_of(be)->queue);
    return err == CL_SUCCESS ? VXM_OK : vxm_cl_fail(be, err, 0, "clFinish");
}

vxm_status vxm_cl_scratch(vxm_backend *be, int slot, size_t nfloats, cl_mem *out)
{
    vxm_cl *cl = vxm_cl_of(be);
    *out = NULL;
    if (nfloats == 0)
        nfloats = 1;
    if (cl->scratch[slot] && cl->scratch_floats[slot] >= nfloats) {
        *out = cl->scratch[slot];
        return VXM_OK;
    }
    if ((cl_ulong)nfloats * sizeof(float) > cl->max_alloc)
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec,
                         "scratch buffer of %llu bytes exceeds CL_DEVICE_MAX_MEM_ALLOC_SIZE = %llu bytes",
                         (unsigned long long)nfloats * 4ull, (unsigned long long)cl->max_alloc);
    if (cl->scratch[slot]) {
        clReleaseMemObject(cl->scratch[slot]); /* in-order queue: pending users keep it alive until done */
        vxm_backend_mem_sub(be, cl->scratch_floats[slot] * sizeof(float));
        cl->scratch[slot] = NULL;
        cl->scratch_floats[slot] = 0;
    }
    cl_int err;
    cl_mem m = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, nfloats * sizeof(float), NULL, &err);
    if (!m)
        return vxm_cl_fail(be, err, 1, "clCreateBuffer(scratch)");
    cl->scratch[slot] = m;
    cl->scratch_floats[slot] = nfloats;
    vxm_backend_mem_add(be, nfloats * sizeof(float));
    *out = m;
    return VXM_OK;
}

vxm_status vxm_cl_copy(vxm_backend *be, cl_mem src, cl_mem dst, size_t nfloats)
{
    if (src == dst || nfloats == 0)
        return VXM_OK;
    cl_int err = clEnqueueCopyBuffer(vxm_cl_of(be)->queue, src, dst, 0, 0, nfloats * sizeof(float), 0, NULL, NULL);
    return err == CL_SUCCESS ? VXM_OK : vxm_cl_fail(be, err, 0, "clEnqueueCopyBuffer");
}

vxm_status vxm_cl_check_tensor(vxm_backend *be, const vxm_tensor *t, const char *what)
{
    if (!t || !t->buf || !t->buf->mem)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: tensor without a buffer", what);
    for (int d = 0; d < 3; d++)
        if (t->shape[d] <= 0)
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: bad shape %dx%dx%d", what, t->shape[0], t->shape[1],
                             t->shape[2]);
    if (t->channels <= 0)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %d channels", what, t->channels);
    size_t n = vxm_tensor_numel(t);
    if (n > t->buf->nfloats)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: tensor of %zu floats in a buffer of %zu", what, n,
                         t->buf->nfloats);
    size_t nvox = (size_t)t->shape[0] * (size_t)t->shape[1] * (size_t)t->shape[2];
    if (nvox > 0xffffffffu)
        return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "%s: %zu voxels (more than 2^32)", what, nvox);
    return VXM_OK;
}

void vxm_cl_args_begin(vxm_cl_args *a, vxm_backend *be, vxm_cl_kid kid)
{
    a->st = vxm_cl_kernel_ready(be, kid);
    a->k = vxm_cl_of(be)->kernel[kid];
    a->idx = 0;
    a->err = CL_SUCCESS;
    a->bad_idx = 0;
}

void vxm_cl_args_begin_kernel(vxm_cl_args *a, cl_kernel k)
{
    a->st = VXM_OK;
    a->k = k;
    a->idx = 0;
    a->err = CL_SUCCESS;
    a->bad_idx = 0;
}

void vxm_cl_arg_raw(vxm_cl_args *a, size_t size, const void *p)
{
    if (a->st) /* no kernel */
        return;
    cl_int err = clSetKernelArg(a->k, a->idx, size, p);
    if (err != CL_SUCCESS && a->err == CL_SUCCESS) {
        a->err = err;
        a->bad_idx = a->idx;
    }
    a->idx++;
}

void vxm_cl_arg_mem(vxm_cl_args *a, cl_mem m)
{
    vxm_cl_arg_raw(a, sizeof m, &m);
}

void vxm_cl_arg_int(vxm_cl_args *a, int v)
{
    cl_int x = v;
    vxm_cl_arg_raw(a, sizeof x, &x);
}

void vxm_cl_arg_uint(vxm_cl_args *a, unsigned v)
{
    cl_uint x = v;
    vxm_cl_arg_raw(a, sizeof x, &x);
}

void vxm_cl_arg_ulong(vxm_cl_args *a, unsigned long long v)
{
    cl_ulong x = v;
    vxm_cl_arg_raw(a, sizeof x, &x);
}

void vxm_cl_arg_float(vxm_cl_args *a, float v)
{
    cl_float x = v;
    vxm_cl_arg_raw(a, sizeof x, &x);
}

vxm_status vxm_cl_args_done_named(vxm_backend *be, vxm_cl_args *a, const char *kernel_name)
{
    if (a->st)
        return a->st;
    if (a->err == CL_SUCCESS)
        return VXM_OK;
    char what[128];
    snprintf(what, sizeof what, "clSetKernelArg(%.60s, %u)", kernel_name, a->bad_idx);
    return vxm_cl_fail(be, a->err, 0, what);
}

vxm_status vxm_cl_args_done(vxm_backend *be, vxm_cl_args *a, vxm_cl_kid kid)
{
    return vxm_cl_args_done_named(be, a, vxm_cl_kernel_names[kid]);
}

vxm_status vxm_cl_launch_nd(vxm_backend *be, cl_kernel k, const char *name, cl_uint dims, const size_t *global,
                            const size_t *local)
{
    for (cl_uint d = 0; d < dims; d++)
        if (global[d] == 0)
            return VXM_OK;
    vxm_cl *cl = vxm_cl_of(be);
    cl_int err = cl->fault_launch && ++cl->nlaunch == cl->fault_launch
                     ? CL_OUT_OF_RESOURCES
                     : clEnqueueNDRangeKernel(cl->queue, k, dims, NULL, global, local, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        return VXM_OK;
    char what[128];
    snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%.60s)", name);
    return vxm_cl_fail(be, err, 0, what);
}

static vxm_status enqueue(vxm_backend *be, vxm_cl_kid kid, cl_uint dims, const size_t *g, const size_t *l)
{
    return vxm_cl_launch_nd(be, vxm_cl_of(be)->kernel[kid], vxm_cl_kernel_names[kid], dims, g, l);
}

vxm_status vxm_cl_launch1(vxm_backend *be, vxm_cl_kid kid, size_t n)
{
    if (n == 0)
        return VXM_OK;
    size_t l = vxm_cl_of(be)->lws[kid];
    size_t g = (n + l - 1) / l * l;
    return enqueue(be, kid, 1, &g, &l);
}

vxm_status vxm_cl_launch2(vxm_backend *be, vxm_cl_kid kid, size_t n0, size_t n1)
{
    if (n0 == 0 || n1 == 0)
        return VXM_OK;
    size_t l[2] = {vxm_cl_of(be)->lws[kid], 1};
    size_t g[2] = {(n0 + l[0] - 1) / l[0] * l[0], n1};
    return enqueue(be, kid, 2, g, l);
}

void vxm_cl_fault_init(vxm_cl *cl)
{
    const char *e = getenv("VXM_OPENCL_FAULT");
    long n = 0;
    char kind[8] = "";
    if (!e || sscanf(e, "%7[a-z]:%ld", kind, &n) != 2 || n <= 0)
        return;
    if (strcmp(kind, "alloc") == 0)
        cl->fault_alloc = n;
    else if (strcmp(kind, "launch") == 0)
        cl->fault_launch = n;
}
