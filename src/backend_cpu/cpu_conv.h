/* Internal to the CPU convolution (cpu_conv.c, cpu_conv_narrow.c): the job description, per-thread scratch and
 * the row set-up both kernel families share. */
#ifndef VXM_BACKEND_CPU_CONV_H
#define VXM_BACKEND_CPU_CONV_H

#include <stddef.h>

typedef struct conv_job {
    const float *x;    /* input (n0, n1, n2, Cin) */
    const float *w;    /* weights as the kernel family wants them (see each file) */
    const float *bias; /* Cout floats, padded with zeros to a vector multiple */
    float *y;          /* output (m0, m1, m2, Cout) */
    int n[3], m[3], k[3], s[3], pad[3];
    int cin, cout;
    int ldw;       /* channel path: weight row length, Cout rounded up to the vector width */
    int span;      /* positions along axis 2 one output row touches: (m2 - 1)*s2 + k2 */
    size_t rowlen; /* floats per padded row buffer (span*Cin rounded up to a vector multiple) */
    int leaky;
    float alpha;
} conv_job;

/* Per-thread scratch. */
typedef struct conv_scratch {
    float *rows;        /* k0*k1 padded input rows of rowlen floats */
    float *block;       /* one output block (channel path, padded Cout) */
    const float **xrow; /* k0*k1: the filled rows of the current output row */
    int *tap;           /* k0*k1: their tap index a*k1 + b */
    const float **xp;   /* k0*k1: kernel arguments */
    const float **wp;   /* k0*k1 */
} conv_scratch;

/* Fills S->xrow / S->tap with the input rows (i0, i1) that output row (o0, o1) reads; out-of-range rows are
 * skipped (SAME zero padding, spec §2.1).  With `copy`, each row is copied into S->rows, zero-padded along axis 2
 * to the span its taps touch (buffer position t = input voxel t - pad2); without, xrow points into the input.
 * Returns the number of rows. */
int cpu_conv_rows(const conv_job *J, int o0, int o1, conv_scratch *S, int copy);

/* Narrow outputs (Cout <= 4, e.g. the 2- or 3-channel flow convolutions) with Cin a multiple of the vector width:
 * vectorized over input channels instead of output channels. */
int cpu_conv_narrow_fits(int cin, int cout);
/* Weights (k0,k1,k2,Cin,Cout) -> the narrow kernels' layout (cpu_conv_narrow.c); wt holds the same count. */
void cpu_conv_narrow_pack(const conv_job *J, const float *w, float *wt);
void cpu_conv_narrow_row(const conv_job *J, int o0, int o1, conv_scratch *S);

#endif
