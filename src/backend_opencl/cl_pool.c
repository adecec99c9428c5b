/* Pool of released device buffers (cl_internal.h): the executor allocates a tensor per node and releases it after
 * its last consumer, so each training step or registered pair repeats the same allocation sizes; reusing the
 * previous run's buffers saves the driver's allocation and first-touch cost every step.  Training steps replay a
 * memory plan instead (graph/plan.h), which trims the pool when it makes its arena (vxm_cl_pool_trim), so that
 * the device holds the arena and not the arena plus a pool of every size the recorded step used. */
#include <stdlib.h>
#include <string.h>

#include "backend_opencl/cl_internal.h"

struct vxm_cl_pool_entry {
    cl_mem mem;
    size_t nfloats;
};

void vxm_cl_pool_init(vxm_backend *be)
{
    vxm_cl *cl = vxm_cl_of(be);
    /* GPUs: a quarter of the device memory; CPU devices share the host's memory with everything else, so 1/16 of
     * it, at most 1 GiB. */
    size_t lim = (size_t)(cl->global_mem / (be->is_gpu ? 4 : 16));
    if (!be->is_gpu && lim > ((size_t)1 << 30))
        lim = (size_t)1 << 30;
    const char *e = getenv("VXM_OPENCL_POOL_MB");
    if (e && *e) {
        char *end;
        unsigned long long mb = strtoull(e, &end, 10);
        if (*end == '\0' && mb < (1ull << 40))
            lim = (size_t)(mb << 20);
    }
    cl->pool_limit = lim;
}

static void drop_entry(vxm_cl *cl, int i)
{
    clReleaseMemObject(cl->pool[i].mem);
    cl->pool_bytes -= cl->pool[i].nfloats * sizeof(float);
    memmove(&cl->pool[i], &cl->pool[i + 1], (size_t)(cl->npool - i - 1) * sizeof *cl->pool);
    cl->npool--;
}

int vxm_cl_pool_take(vxm_cl *cl, size_t nfloats, vxm_buffer *b)
{
    int best = -1;
    for (int i = 0; i < cl->npool; i++) {
        size_t n = cl->pool[i].nfloats;
        if (n < nfloats || n - nfloats > nfloats / 8)
            continue;
        if (best < 0 || n < cl->pool[best].nfloats)
            best = i;
        if (n == nfloats)
            break;
    }
    if (best < 0)
        return 0;
    b->mem = cl->pool[best].mem;
    b->nfloats = cl->pool[best].nfloats;
    cl->pool_bytes -= b->nfloats * sizeof(float);
    memmove(&cl->pool[best], &cl->pool[best + 1], (size_t)(cl->npool - best - 1) * sizeof *cl->pool);
    cl->npool--;
    return 1;
}

int vxm_cl_pool_give(vxm_cl *cl, vxm_buffer *b)
{
    size_t bytes = b->nfloats * sizeof(float);
    if (bytes > cl->pool_limit)
        return 0;
    while (cl->npool > 0 && cl->pool_bytes + bytes > cl->pool_limit)
        drop_entry(cl, 0); /* oldest first */
    if (cl->npool == cl->pool_cap) {
        int cap = cl->pool_cap ? 2 * cl->pool_cap : 32;
        struct vxm_cl_pool_entry *grown = realloc(cl->pool, (size_t)cap * sizeof *grown);
        if (!grown)
            return 0;
        cl->pool = grown;
        cl->pool_cap = cap;
    }
    cl->pool[cl->npool].mem = b->mem;
    cl->pool[cl->npool].nfloats = b->nfloats;
    cl->npool++;
    cl->pool_bytes += bytes;
    return 1;
}

void vxm_cl_pool_trim(vxm_backend *be)
{
    vxm_cl_pool_flush(vxm_cl_of(be));
}

void vxm_cl_pool_flush(vxm_cl *cl)
{
    while (cl->npool > 0)
        drop_entry(cl, cl->npool - 1);
    free(cl->pool);
    cl->pool = NULL;
    cl->pool_cap = 0;
}
