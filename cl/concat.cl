/* Channel concatenation y = [a, b] (spec §2.5), one work-item per voxel. */
__kernel void vxm_concat(__global const float *a, __global const float *b, __global float *y, int ca, int cb,
                         uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    __global float *yp = y + (ulong)v * (ulong)(ca + cb);
    __global const float *ap = a + (ulong)v * (ulong)ca;
    __global const float *bp = b + (ulong)v * (ulong)cb;
    for (int c = 0; c < ca; c++)
        yp[c] = ap[c];
    for (int c = 0; c < cb; c++)
        yp[ca + c] = bp[c];
}

/* Backward of concat: y = channels [c0, c0 + cy) of x (cx channels), one work-item per element of y. */
__kernel void vxm_slice_channels(__global const float *x, __global float *y, int cx, int c0, int cy, ulong n)
{
    ulong g = get_global_id(0);
    if (g >= n)
        return;
    ulong v = g / (ulong)cy;
    int c = (int)(g % (ulong)cy);
    y[g] = x[v * (ulong)cx + (ulong)(c0 + c)];
}
