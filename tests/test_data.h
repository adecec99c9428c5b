/* Shared-data helpers for the golden tests: load a file from ../shared (a FAIL line when it cannot be read)
 * and the mean hard Dice over a label list. */
#ifndef VXM_TEST_DATA_H
#define VXM_TEST_DATA_H

#include "test_util.h"
#include "vxm.h"

static inline vxm_volume *td_load(vxm_context *ctx, const char *rel, const char *key)
{
    char p[1024];
    vxm_volume *v = NULL;
    if (vxm_volume_read(ctx, tu_shared_path(p, sizeof p, rel), key, &v)) {
        printf("FAIL load %s: %s\n", rel, vxm_context_error(ctx));
        tu_failed_count++;
        return NULL;
    }
    return v;
}

static inline double td_mean_dice(vxm_context *ctx, const vxm_volume *a, const vxm_volume *b, const int *labels,
                                  int n)
{
    double d[64], s = 0;
    if (n < 1 || n > 64 || vxm_dice(ctx, a, b, labels, n, d))
        return -1;
    for (int i = 0; i < n; i++)
        s += d[i];
    return s / n;
}

#endif
