/* Backward of the LINEAR spatial transform y(x) = interp(img, x + disp(x)) (training doc §2.7; forward in
 * spatial_transform.cl).  Locations are float32, computed exactly as the forward does (vxm_location); the weights are
 * the forward's (vxm_axis_linear).  Grids: image n0 x n1 x n2 with nch channels, output (= displacement) m0 x m1 x m2;
 * displacement channel c is along axis 3 - ndim + c, the leading 3 - ndim axes are "fixed" (single corner, weight 1).
 * With use_fill, voxels whose location leaves [0, n-1] took the fill value and pass no gradient. */

/* Per-axis corners and weights of the output voxel v (fixed axes: lo == hi, both weights 1, counted once); returns 0
 * if the voxel took the fill value. */
static inline int vxm_st_axes(__global const float *disp, uint v, int n0, int n1, int n2, int m1, int m2, int ndim,
                              int use_fill, float *p, int *lo, int *hi, float *wl, float *wh)
{
    int x0, x1, x2;
    vxm_unravel(v, m1, m2, &x0, &x1, &x2);
    vxm_location(x0, x1, x2, disp + (ulong)v * (ulong)ndim, ndim, 1.0f, p);
    int n[3] = {n0, n1, n2};
    if (use_fill && (vxm_axis_outside(p[0], n0) || vxm_axis_outside(p[1], n1) || vxm_axis_outside(p[2], n2)))
        return 0;
    for (int a = 0; a < 3; a++) {
        if (a < 3 - ndim)
            vxm_axis_fixed(p[a], n[a], &lo[a], &hi[a], &wl[a], &wh[a]);
        else
            vxm_axis_linear(p[a], n[a], &lo[a], &hi[a], &wl[a], &wh[a]);
    }
    return 1;
}

/* ddisp: one work-item per output voxel.  d y / d p_d = sum over the corners of the other axes of
 * (product of their weights) * (V[hi_d] - V[lo_d]) where 0 <= p_d <= n_d - 1 (tf.clip_by_value passes the gradient
 * inclusively; floor and corners are constants), else 0; contracted with dy over the channels.  At p_d = n_d - 1 the
 * two corners coincide (derivative 0); at an integer interior p_d = k it is the forward difference. */
__kernel void vxm_st_backward_disp(__global const float *img, __global const float *disp, __global const float *dy,
                                   __global float *ddisp, int n0, int n1, int n2, int nch, int m1, int m2, int ndim,
                                   int use_fill, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    float p[3], wl[3], wh[3];
    int lo[3], hi[3];
    __global float *out = ddisp + (ulong)v * (ulong)ndim;
    int live = vxm_st_axes(disp, v, n0, n1, n2, m1, m2, ndim, use_fill, p, lo, hi, wl, wh);
    int n[3] = {n0, n1, n2};
    int first = 3 - ndim;
    __global const float *g = dy + (ulong)v * (ulong)nch;
    for (int d = first; d < 3; d++) {
        float acc = 0.0f;
        if (live && p[d] >= 0.0f && p[d] <= (float)(n[d] - 1)) {
            /* the two other axes e < f, each with its lo/hi corners (one corner on a fixed axis) */
            int e = d == 0 ? 1 : 0, f = d == 2 ? 1 : 2;
            int ne = e < first ? 1 : 2, nf = f < first ? 1 : 2;
            for (int c = 0; c < nch; c++) {
                float gc = 0.0f;
                for (int a = 0; a < ne; a++)
                    for (int b = 0; b < nf; b++) {
                        int ix[3];
                        ix[e] = a ? hi[e] : lo[e];
                        ix[f] = b ? hi[f] : lo[f];
                        float w = (a ? wh[e] : wl[e]) * (b ? wh[f] : wl[f]);
                        ix[d] = hi[d];
                        float vh = img[(((ulong)ix[0] * (ulong)n1 + (ulong)ix[1]) * (ulong)n2 + (ulong)ix[2]) * nch + c];
                        ix[d] = lo[d];
                        float vl = img[(((ulong)ix[0] * (ulong)n1 + (ulong)ix[1]) * (ulong)n2 + (ulong)ix[2]) * nch + c];
                        gc += w * (vh - vl);
                    }
                acc += g[c] * gc;
            }
        }
        out[d - first] = acc;
    }
}

/* dimg is the scatter of dy with the trilinear weights, made deterministic without float atomics: every output
 * voxel is keyed by its base cell (the lo corner, an image voxel index); cells are counted (integer atomics are
 * exact), prefix-summed (01_reduce.cl), filled, and each cell's list sorted by output voxel; then the cells scatter
 * their lists in 8 conflict-free colours (vxm_st_backward_img).  Every image voxel thus receives its terms in a fixed
 * order -- colour, then output voxel, then corner -- whatever the scheduling.  Key -1: filled voxel, no gradient. */
static inline int vxm_st_key(__global const float *disp, uint v, int n0, int n1, int n2, int m1, int m2, int ndim,
                             int use_fill)
{
    float p[3], wl[3], wh[3];
    int lo[3], hi[3];
    if (!vxm_st_axes(disp, v, n0, n1, n2, m1, m2, ndim, use_fill, p, lo, hi, wl, wh))
        return -1;
    return (lo[0] * n1 + lo[1]) * n2 + lo[2];
}

__kernel void vxm_st_backward_count(__global const float *disp, volatile __global uint *cnt, int n0, int n1, int n2,
                                    int m1, int m2, int ndim, int use_fill, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int key = vxm_st_key(disp, v, n0, n1, n2, m1, m2, ndim, use_fill);
    if (key >= 0)
        atomic_inc(&cnt[key]);
}

__kernel void vxm_st_backward_slots(__global const float *disp, volatile __global uint *cursor,
                                    __global const uint *start, __global uint *list, int n0, int n1, int n2, int m1,
                                    int m2, int ndim, int use_fill, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int key = vxm_st_key(disp, v, n0, n1, n2, m1, m2, ndim, use_fill);
    if (key >= 0)
        list[start[key] + atomic_inc(&cursor[key])] = v;
}

/* Heapsort of one cell's list (in place, O(L log L) also for the long lists of border cells that collect every
 * clamped out-of-range location). */
static inline void vxm_sift(__global uint *a, uint root, uint len)
{
    for (;;) {
        uint child = 2 * root + 1;
        if (child >= len)
            return;
        if (child + 1 < len && a[child + 1] > a[child])
            child++;
        if (a[root] >= a[child])
            return;
        uint t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

__kernel void vxm_st_backward_sort(__global const uint *start, __global uint *list, uint ncell)
{
    uint cell = get_global_id(0);
    if (cell >= ncell)
        return;
    uint s = start[cell], len = start[cell + 1] - s;
    if (len < 2)
        return;
    __global uint *a = list + s;
    for (uint i = len / 2; i-- > 0;)
        vxm_sift(a, i, len);
    for (uint end = len - 1; end > 0; end--) {
        uint t = a[0];
        a[0] = a[end];
        a[end] = t;
        vxm_sift(a, 0, end);
    }
}

/* One colour of the scatter: the cells whose indices have parities (p0, p1, p2), one work-item per cell (sub-lattice
 * c0 x c1 x c2).  A cell's corners span only its own index and the next on each axis, so two cells of one colour never
 * touch the same image voxel: the += below never races, and the host runs the 8 colours in a fixed order. */
__kernel void vxm_st_backward_img(__global const float *disp, __global const float *dy, __global const uint *start,
                                  __global const uint *list, __global float *dimg, int n0, int n1, int n2, int nch,
                                  int m1, int m2, int ndim, int p0, int p1, int p2, int c1, int c2, uint ncol)
{
    uint g = get_global_id(0);
    if (g >= ncol)
        return;
    int i, j, k;
    vxm_unravel(g, c1, c2, &i, &j, &k);
    uint cell = (uint)(((2 * i + p0) * n1 + 2 * j + p1) * n2 + 2 * k + p2);
    int first = 3 - ndim, na = first > 0 ? 1 : 2, nb = first > 1 ? 1 : 2;
    for (uint s = start[cell]; s < start[cell + 1]; s++) {
        uint v = list[s];
        float p[3], wl[3], wh[3];
        int lo[3], hi[3];
        vxm_st_axes(disp, v, n0, n1, n2, m1, m2, ndim, 0, p, lo, hi, wl, wh);
        __global const float *gv = dy + (ulong)v * (ulong)nch;
        /* the forward's corners (vxm_corners_linear: same weights, same order) */
        for (int a = 0; a < na; a++)
            for (int b = 0; b < nb; b++)
                for (int d = 0; d < 2; d++) {
                    float w = ((a ? wh[0] : wl[0]) * (b ? wh[1] : wl[1])) * (d ? wh[2] : wl[2]);
                    ulong off = (((ulong)(a ? hi[0] : lo[0]) * (ulong)n1 + (ulong)(b ? hi[1] : lo[1])) * (ulong)n2 +
                                 (ulong)(d ? hi[2] : lo[2])) * (ulong)nch;
                    for (int c = 0; c < nch; c++)
                        dimg[off + c] += w * gv[c];
                }
    }
}
