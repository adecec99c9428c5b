/* Hard Dice overlap per label, as VoxelMorph's test.py (spec §9.3). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"

vxm_status vxm_dice(vxm_context *ctx, const vxm_volume *a, const vxm_volume *b, const int *labels, int nlabels,
                    double *dice)
{
    if (memcmp(a->shape, b->shape, sizeof a->shape) || a->channels != 1 || b->channels != 1)
        return vxm_error(ctx, VXM_ESHAPE, "dice", "label maps must be single-channel volumes of the same shape");
    size_t n = vxm_volume_numel(a);
    long *inter = calloc((size_t)nlabels, sizeof(long)), *sa = calloc((size_t)nlabels, sizeof(long)),
         *sb = calloc((size_t)nlabels, sizeof(long));
    if (!inter || !sa || !sb) {
        free(inter);
        free(sa);
        free(sb);
        return vxm_error(ctx, VXM_ENOMEM, "dice", "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        long la = lrintf(a->data[i]), lb = lrintf(b->data[i]);
        for (int l = 0; l < nlabels; l++) {
            int ina = la == labels[l], inb = lb == labels[l];
            sa[l] += ina;
            sb[l] += inb;
            inter[l] += ina && inb;
        }
    }
    for (int l = 0; l < nlabels; l++) {
        double den = (double)(sa[l] + sb[l]);
        dice[l] = 2.0 * (double)inter[l] / (den > DBL_EPSILON ? den : DBL_EPSILON);
    }
    free(inter);
    free(sa);
    free(sb);
    return VXM_OK;
}
