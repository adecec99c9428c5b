/* Internal to the CPU convolution (cpu_conv.c, cpu_conv_backward.c, cpu_conv_narrow.c, cpu_conv_fused.c): the job
 * description, per-thread scratch, the row set-up both kernel families share, and the prepared plan (packed weights,
 * scratch) through which the fused ops (conv + max-pool, upsample + concat + conv) drive the same kernels. */
#ifndef VXM_BACKEND_CPU_CONV_H
#define VXM_BACKEND_CPU_CONV_H

#include <stddef.h>

#include "backend_cpu/cpu_internal.h"

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
    int uniform; /* conv_row's uniform-block shortcut (cpu_conv_block_uniform); VXM_CPU_UNIFORM=0 turns it off */
    /* Output layout, in floats: y + o0*ys[0] + o1*ys[1] + o2*ys[2] (dense by default; cpu_conv_fused.c's folded
     * conv_upcat writes each parity class of outputs through a view with strides doubled).  With `accumulate`, the
     * sums start from y's values instead of the bias (the passes path only: cpu_conv_in_passes; no uniform blocks). */
    ptrdiff_t ys[3];
    int accumulate;
    /* Fused input (cpu_conv_fused.c): when set, input row (i0, i1) is not read from x but assembled by
     * load(J, i0, i1, first, count, dst) -- voxels [first, first + count) of the row, Cin floats each -- into the
     * same row buffers, so the arithmetic is that of a conv over the materialised input.  NULL: read x. */
    void (*load)(const struct conv_job *J, int i0, int i1, int first, int count, float *dst);
    const void *load_arg; /* the loader's sources */
} conv_job;

/* Per-thread scratch. */
typedef struct conv_scratch {
    float *rows;        /* padded input rows of rowlen floats: k0*k1, or (k0+1)*(k1+1) with the row cache */
    long *key;          /* row cache (forward plans): the input row i0*n1 + i1 each buffer holds, -1 if none;
                         * NULL: no cache, buffer t holds the t-th row of the current output row */
    float *block;       /* one output block (channel path, padded Cout) */
    const float **xrow; /* k0*k1: the filled rows of the current output row */
    int *tap;           /* k0*k1: their tap index a*k1 + b */
    const float **xp;   /* k0*k1: kernel arguments */
    const float **wp;   /* k0*k1 */
} conv_scratch;

/* Fills S->xrow / S->tap with the input rows (i0, i1) that output row (o0, o1) reads; out-of-range rows are
 * skipped (SAME zero padding, spec §2.1).  With `copy`, each row is copied into S->rows, zero-padded along axis 2
 * to the span its taps touch (buffer position t = input voxel t - pad2) -- with the row cache, only rows the
 * previous output rows have not already filled (row (i0, i1) lives in buffer (i0 mod (k0+1), i1 mod (k1+1)), so the
 * k0 x k1 rows of one output row never collide, and the next output row along either axis reuses all but the
 * new ones: 3 fills instead of 9 for a 3x3 tap, each input row filled about once per plane band); without, xrow points into the input (or,
 * with a loader, to the whole row assembled unpadded in S->rows).  Returns the number of rows. */
int cpu_conv_rows(const conv_job *J, int o0, int o1, conv_scratch *S, int copy);

/* Whether the R output voxels from o2 of the current output row read bitwise-uniform windows of every one of its
 * ntap filled row buffers (copy mode), so that they are bitwise equal (cpu_conv_rows.c; 0 when J->uniform is off). */
int cpu_conv_block_uniform(const conv_job *J, const conv_scratch *S, int ntap, int o2, int R);

/* Whether conv_row runs Cout in passes of whole register-block chunks (Cout a multiple of the vector width, and of
 * the chunk): the path that honours ys[2] and `accumulate`. */
int cpu_conv_in_passes(int cout);

/* Narrow outputs (Cout <= 4, e.g. the 2- or 3-channel flow convolutions) with Cin a multiple of the vector width:
 * vectorized over input channels instead of output channels. */
int cpu_conv_narrow_fits(int cin, int cout);
/* Weights (k0,k1,k2,Cin,Cout) -> the narrow kernels' layout (cpu_conv_narrow.c); wt holds the same count. */
void cpu_conv_narrow_pack(const conv_job *J, const float *w, float *wt);
void cpu_conv_narrow_row(const conv_job *J, int o0, int o1, conv_scratch *S, float *yrow);

/* A prepared convolution: the job with its packed weights and zero-padded bias, and per-thread scratch for nt
 * threads, each followed by `extra` floats for the caller (cpu_conv_plan_extra). */
typedef struct conv_plan {
    conv_job J;
    int nt, narrow;
    size_t ntap2, per_thread, extra;
    size_t nslot; /* row buffers per thread: (k0+1)*(k1+1) with the row cache (channel path), else k0*k1 */
    float *bias, *wpack, *scratch;
    const float **ptrs;
    int *taps;
    long *keys; /* the row cache's keys, nslot per thread (channel path only) */
} conv_plan;

/* Checks a convolution (name `op`, for messages) of an n-grid input of cin channels into an m-grid output of cout
 * channels -- m must be ceil(n / stride) -- with weights w, bias b (may be NULL), and prepares P for at most
 * `items` parallel work units (fewer threads for small work, as cpu_conv).  x, y, load: set by the caller in P->J
 * afterwards (x may stay NULL with a loader, y when the rows go through cpu_conv_plan_row).  Row buffers hold a whole
 * input row too (a loader's unpadded rows for the narrow kernels).  Free with cpu_conv_plan_free. */
vxm_status cpu_conv_plan_init(vxm_backend *be, const char *op, const int n[3], int cin, const int m[3], int cout,
                              const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, long items,
                              size_t extra, conv_plan *P);
void cpu_conv_plan_free(conv_plan *P);
/* Thread tid's scratch set up in S; returns its `extra` floats. */
float *cpu_conv_plan_thread(const conv_plan *P, int tid, conv_scratch *S);
/* Output row (o0, o1) (m2 x Cout floats) computed into yrow, by whichever kernel family fits the plan. */
void cpu_conv_plan_row(const conv_plan *P, int o0, int o1, conv_scratch *S, float *yrow);
/* Every output row into P->J.y, over P->nt threads (the scheduling of cpu_conv). */
void cpu_conv_plan_run(const conv_plan *P);
/* OpenMP thread number (0 without OpenMP). */
int cpu_conv_thread_id(void);

/* The fused ops (cpu_conv_fused.c; backend.h documents them). */
vxm_status cpu_conv_pool(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                         const vxm_conv_params *p, const int f[3], vxm_tensor *y);
vxm_status cpu_conv_upcat(vxm_backend *be, const vxm_tensor *a, const int f[3], const vxm_tensor *skip,
                          const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, vxm_tensor *y);

#endif
