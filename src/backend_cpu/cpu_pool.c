/* The CPU backend's pool of freed large buffers.  A training step (and every registration) allocates the same
 * large tensors again and again; returning them to the C library unmaps them (glibc serves large requests with
 * mmap), so each new one page-faults its way into memory -- measured 0.8 s of a 3.0 s full-size training step.  The
 * pool keeps freed buffers of at least CPU_POOL_MIN bytes, up to CPU_POOL_MAX of them and a byte cap, and hands one
 * back for a request it can hold wasting at most 1/16 of it.  A miss releases the oldest pooled buffers only as far
 * as needed to keep pooled plus live bytes within the most the backend's buffers have ever had live (its
 * mem_peak): the pool never raises peak memory, and a repeated schedule (every training step) finds its buffers
 * again instead of churning them.  Contents are not cleared (no op reads an output before writing it). */
#include <stdlib.h>
#include <unistd.h>

#include "backend_cpu/cpu_internal.h"

#define CPU_POOL_MIN (1u << 20) /* smaller buffers are cheap to allocate */
#define CPU_POOL_MAX 64

struct cpu_pool {
    vxm_buffer *item[CPU_POOL_MAX];
    int n;
    size_t bytes, cap;
};

cpu_pool *cpu_pool_create(void)
{
    cpu_pool *p = calloc(1, sizeof *p);
    if (p) {
        /* at most a quarter of the physical memory stays cached */
        long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
        p->cap = pages > 0 && size > 0 ? (size_t)pages * (size_t)size / 4 : (size_t)1 << 30;
    }
    return p;
}

static void release(vxm_buffer *b)
{
    free(b->data);
    free(b);
}

void cpu_pool_destroy(cpu_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++)
        release(p->item[i]);
    free(p);
}

/* Drops the oldest entry. */
static void evict_oldest(cpu_pool *p)
{
    p->bytes -= p->item[0]->n * sizeof(float);
    release(p->item[0]);
    for (int i = 1; i < p->n; i++)
        p->item[i - 1] = p->item[i];
    p->n--;
}

vxm_buffer *cpu_pool_take(cpu_pool *p, size_t nfloats, size_t in_use, size_t peak)
{
    if (!p || nfloats * sizeof(float) < CPU_POOL_MIN)
        return NULL;
    int best = -1;
    for (int i = 0; i < p->n; i++) {
        size_t have = p->item[i]->n;
        if (have >= nfloats && have - nfloats <= have / 16 && (best < 0 || have < p->item[best]->n))
            best = i;
    }
    if (best < 0) {
        /* a miss: room for the new buffer within the larger of the peak so far and what is live with it */
        size_t need = in_use + nfloats * sizeof(float), cap = need > peak ? need : peak;
        while (p->n > 0 && need + p->bytes > cap)
            evict_oldest(p);
        return NULL;
    }
    vxm_buffer *b = p->item[best];
    p->item[best] = p->item[--p->n];
    p->bytes -= b->n * sizeof(float);
    return b;
}

void cpu_pool_trim(cpu_pool *p)
{
    while (p && p->n > 0)
        evict_oldest(p);
}

void cpu_pool_give(cpu_pool *p, vxm_buffer *b)
{
    size_t bytes = b->n * sizeof(float);
    if (!p || bytes < CPU_POOL_MIN || bytes > p->cap) {
        release(b);
        return;
    }
    /* make room: drop the oldest entries until the new one fits */
    while (p->n > 0 && (p->n == CPU_POOL_MAX || p->bytes + bytes > p->cap))
        evict_oldest(p);
    p->item[p->n++] = b;
    p->bytes += bytes;
}
