/* Deterministic chunked reduction (cpu_reduce.h): fixed chunks, double partials, summed in chunk order. */
#include <stdlib.h>

#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_reduce.h"

vxm_status cpu_det_reduce(vxm_backend *be, size_t n, size_t chunk, int k, cpu_reduce_fn fn, const void *arg,
                          double *acc)
{
    for (int j = 0; j < k; j++)
        acc[j] = 0.0;
    if (n == 0)
        return VXM_OK;
    if (chunk == 0)
        chunk = 1;
    size_t nchunk = (n + chunk - 1) / chunk;
    double *part = calloc(nchunk * (size_t)k, sizeof *part);
    if (!part)
        return cpu_nomem(be, nchunk * (size_t)k * sizeof *part);
    int par = nchunk > 1 && n >= CPU_PAR_MIN / 8;
    long nc = (long)nchunk;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (par)
    for (long c = 0; c < nc; c++) {
        size_t b = (size_t)c * chunk, e = b + chunk < n ? b + chunk : n;
        fn(arg, b, e, part + (size_t)c * (size_t)k);
    }
    for (size_t c = 0; c < nchunk; c++)
        for (int j = 0; j < k; j++)
            acc[j] += part[c * (size_t)k + (size_t)j];
    free(part);
    return VXM_OK;
}
