/* The input rows of an output row (cpu_conv.h: cpu_conv_rows), shared by the forward, fused and filter-gradient
 * convolutions: SAME zero padding (spec §2.1) by skipping out-of-range rows along axes 0 and 1 and by zero-padded
 * row buffers along axis 2, with the row cache of forward plans. */
#include <string.h>

#include "backend_cpu/cpu_conv.h"

/* Copies input row (i0, i1) into buf with zeros where the row's taps fall outside [0, n2). */
static void fill_row(const conv_job *J, int i0, int i1, float *buf)
{
    size_t cin = (size_t)J->cin;
    int lo = J->pad[2];                           /* buffer position of input voxel 0 */
    int first = lo < 0 ? 0 : lo > J->span ? J->span : lo;          /* first buffer position holding data */
    int last = lo + J->n[2] > J->span ? J->span : lo + J->n[2];      /* one past the last */
    if (last < first)
        last = first;
    memset(buf, 0, (size_t)first * cin * sizeof(float));
    if (last > first && J->load)
        J->load(J, i0, i1, first - lo, last - first, buf + (size_t)first * cin);
    else if (last > first)
        memcpy(buf + (size_t)first * cin,
               J->x + (((size_t)i0 * (size_t)J->n[1] + (size_t)i1) * (size_t)J->n[2] + (size_t)(first - lo)) * cin,
               (size_t)(last - first) * cin * sizeof(float));
    memset(buf + (size_t)last * cin, 0, (size_t)(J->span - last) * cin * sizeof(float));
}

int cpu_conv_rows(const conv_job *J, int o0, int o1, conv_scratch *S, int copy)
{
    int ntap = 0;
    for (int a = 0; a < J->k[0]; a++) {
        int i0 = o0 * J->s[0] - J->pad[0] + a;
        if (i0 < 0 || i0 >= J->n[0])
            continue;
        for (int b = 0; b < J->k[1]; b++) {
            int i1 = o1 * J->s[1] - J->pad[1] + b;
            if (i1 < 0 || i1 >= J->n[1])
                continue;
            if (copy && S->key) {
                size_t slot = (size_t)(i0 % (J->k[0] + 1)) * (size_t)(J->k[1] + 1) + (size_t)(i1 % (J->k[1] + 1));
                float *buf = S->rows + slot * J->rowlen;
                long key = (long)i0 * J->n[1] + i1;
                if (S->key[slot] != key) {
                    fill_row(J, i0, i1, buf);
                    S->key[slot] = key;
                }
                S->xrow[ntap] = buf;
            } else if (copy) {
                float *buf = S->rows + (size_t)ntap * J->rowlen;
                fill_row(J, i0, i1, buf);
                S->xrow[ntap] = buf;
            } else if (J->load) { /* the whole row, unpadded (rowlen >= n2 * Cin: cpu_conv_plan_init) */
                float *buf = S->rows + (size_t)ntap * J->rowlen;
                J->load(J, i0, i1, 0, J->n[2], buf);
                S->xrow[ntap] = buf;
            } else {
                S->xrow[ntap] = J->x + ((size_t)i0 * (size_t)J->n[1] + (size_t)i1) * (size_t)J->n[2] * (size_t)J->cin;
            }
            S->tap[ntap] = a * J->k[1] + b;
            ntap++;
        }
    }
    return ntap;
}
