/* Accurate accumulation and deterministic reductions for the training ops (sorts right after 00_common.cl so that
 * loss.cl and spatial_transform_backward.cl can use it).
 *
 * vxm_acc is the accumulator of every sum whose accuracy matters (loss totals, NCC window sums, training doc §2.1 and
 * ../data/train/README.md: float32 window sums are 8e-3 off TF's gradients, double ones 1.1e-4): a double where the
 * device has cl_khr_fp64, else a float2 (hi, lo) "double-float" pair summed with Knuth's TwoSum (about 44 bits).
 * Both are 8 bytes, so the host sizes buffers of vxm_acc the same way for either (2 floats each). */
#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double vxm_acc;
static inline vxm_acc vxm_acc_zero(void)
{
    return 0.0;
}
static inline vxm_acc vxm_acc_of(float x)
{
    return (double)x;
}
static inline vxm_acc vxm_acc_add(vxm_acc a, vxm_acc b)
{
    return a + b;
}
static inline float vxm_acc_float(vxm_acc a)
{
    return (float)a;
}
#else
typedef float2 vxm_acc;
static inline vxm_acc vxm_acc_zero(void)
{
    return (float2)(0.0f, 0.0f);
}
static inline vxm_acc vxm_acc_of(float x)
{
    return (float2)(x, 0.0f);
}
/* TwoSum of the high parts, low parts added to the error, renormalised (FP_CONTRACT is off: 00_common.cl). */
static inline vxm_acc vxm_acc_add(vxm_acc a, vxm_acc b)
{
    float s = a.x + b.x;
    float bb = s - a.x;
    float e = (a.x - (s - bb)) + (b.x - bb);
    e += a.y + b.y;
    float hi = s + e;
    return (float2)(hi, e - (hi - s));
}
static inline float vxm_acc_float(vxm_acc a)
{
    return a.x + a.y;
}
#endif

/* One level of the deterministic sum: nq interleaved quantities (element e of quantity q at in[e*nq + q]), n elements
 * each, cut into fixed chunks of `chunk` elements (a constant of the host code, never the work-group size), each
 * chunk summed in element order into out[g*nq + q].  The host repeats levels until one partial per quantity is left,
 * so the partition and the order of every addition depend only on n.  Grid: (chunks, nq). */
__kernel void vxm_reduce_acc(__global const vxm_acc *in, __global vxm_acc *out, uint n, uint nq, uint chunk, uint nout)
{
    uint g = get_global_id(0), q = get_global_id(1);
    if (g >= nout)
        return;
    vxm_acc s = vxm_acc_zero();
    ulong e0 = (ulong)g * chunk;
    for (uint t = 0; t < chunk; t++) /* uniform trip count (rusticl), bound checked inside */
        if (e0 + t < n)
            s = vxm_acc_add(s, in[(e0 + t) * nq + q]);
    out[(ulong)g * nq + q] = s;
}

/* Exclusive prefix sum of n uints in three kernels (integer sums are exact, so any partition gives the same result):
 * per-chunk totals, a serial scan of the totals, then per-chunk offsets.  aux + aoff holds the chunk totals. */
__kernel void vxm_scan_chunks(__global const uint *cnt, __global uint *aux, uint aoff, uint n, uint chunk,
                              uint nchunks)
{
    uint g = get_global_id(0);
    aux += aoff;
    if (g >= nchunks)
        return;
    uint s = 0;
    ulong e0 = (ulong)g * chunk;
    for (uint t = 0; t < chunk; t++)
        if (e0 + t < n)
            s += cnt[e0 + t];
    aux[g] = s;
}

__kernel void vxm_scan_top(__global uint *aux, uint aoff, uint nchunks)
{
    aux += aoff;
    if (get_global_id(0) != 0)
        return;
    uint s = 0;
    for (uint g = 0; g < nchunks; g++) {
        uint c = aux[g];
        aux[g] = s;
        s += c;
    }
    aux[nchunks] = s;
}

/* start[e] = exclusive prefix of cnt; start[n] = total.  cnt is zeroed on the way (it becomes a fill cursor). */
__kernel void vxm_scan_apply(__global uint *cnt, __global const uint *aux, uint aoff, __global uint *start, uint n,
                             uint chunk, uint nchunks)
{
    uint g = get_global_id(0);
    aux += aoff;
    if (g >= nchunks)
        return;
    uint s = aux[g];
    ulong e0 = (ulong)g * chunk;
    for (uint t = 0; t < chunk; t++)
        if (e0 + t < n) {
            start[e0 + t] = s;
            s += cnt[e0 + t];
            cnt[e0 + t] = 0;
        }
    if (g == nchunks - 1)
        start[n] = aux[nchunks];
}
