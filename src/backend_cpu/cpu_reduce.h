/* Internal to the CPU backend: the deterministic reduction behind every loss (backend.h, training section).
 * The items [0, n) are cut into fixed chunks of `chunk` items -- a partition that depends on the data shape
 * only, never on the thread count -- each chunk is summed into its own zeroed double partial, and the partials
 * are added in chunk order.  The result is therefore bitwise identical for any number of threads. */
#ifndef VXM_BACKEND_CPU_REDUCE_H
#define VXM_BACKEND_CPU_REDUCE_H

#include <stddef.h>

#include "backend.h"

/* Adds the contribution of items [begin, end) to acc[0..k) (acc starts at zero for every chunk). */
typedef void (*cpu_reduce_fn)(const void *arg, size_t begin, size_t end, double *acc);

/* acc[0..k) = sum over items [0, n) as above.  VXM_ENOMEM only when the partials cannot be allocated. */
vxm_status cpu_det_reduce(vxm_backend *be, size_t n, size_t chunk, int k, cpu_reduce_fn fn, const void *arg,
                          double *acc);

#endif
