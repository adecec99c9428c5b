/* The input rows of an output row (cpu_conv.h: cpu_conv_rows), shared by the forward, fused and filter-gradient
 * convolutions: SAME zero padding (spec §2.1) by skipping out-of-range rows along axes 0 and 1 and by zero-padded
 * row buffers along axis 2, with the row cache of forward plans; and the uniform-window test of conv_row. */
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

/* Whether every in-range tap row (a zero-padded row buffer) is uniform -- its voxels bitwise identical -- over the
 * positions that the R output voxels from o2 on read: then those outputs are bitwise equal (each is the same sequence
 * of float32 operations on the same values) and one of them is computed.  Comparing bits, -0 and +0 differ and a
 * NaN equals only its own pattern; a window that is not uniform usually fails on its first tap row within a few
 * bytes.  This is the background of a skull-stripped scan: zeros at the input, then in the first layers one constant
 * vector per layer away from the brain and the volume's borders (issue 12: exact, unlike a threshold). */
int cpu_conv_block_uniform(const conv_job *J, const conv_scratch *S, int ntap, int o2, int R)
{
    if (!J->uniform || J->accumulate || J->ys[2] != J->cout || R < 2)
        return 0;
    size_t cin = (size_t)J->cin;
    size_t first = (size_t)o2 * (size_t)J->s[2], last = (size_t)(o2 + R - 1) * (size_t)J->s[2] + (size_t)J->k[2] - 1;
    for (int t = 0; t < ntap; t++) { /* each voxel of the window equals the one before it, byte for byte */
        const float *a = S->xrow[t] + first * cin;
        if (memcmp(a + cin, a, (last - first) * cin * sizeof(float)))
            return 0;
    }
    return 1;
}
