/* Dense displacement of an affine matrix (spec §4.5, current convention: full transform).  mat holds ndim rows of
 * ndim+1 floats (row-major) in .s0 .. .sb; image axis j is spatial axis 3 - ndim + j.  With shift_center the grid
 * is centred, m_j = x_j - (n_j - 1)/2, else m_j = x_j; as in TF's affine_to_dense_shift the displacement is
 * (A m + t) - m, which equals p - x for p = A (x - c) + t + c. */
__kernel void vxm_affine_to_disp(__global float *y, int m0, int m1, int m2, int ndim, int shift_center, float16 mat,
                                 uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int xs[3];
    vxm_unravel(v, m1, m2, &xs[0], &xs[1], &xs[2]);
    int ns[3] = {m0, m1, m2};
    float a[16];
    vstore16(mat, 0, a);
    float mc[3];
    for (int j = 0; j < ndim; j++) {
        int ax = 3 - ndim + j;
        float c = shift_center ? (float)(ns[ax] - 1) * 0.5f : 0.0f;
        mc[j] = (float)xs[ax] - c;
    }
    __global float *yp = y + (ulong)v * (ulong)ndim;
    for (int r = 0; r < ndim; r++) {
        float acc = 0.0f;
        for (int j = 0; j < ndim; j++)
            acc += a[r * (ndim + 1) + j] * mc[j];
        acc += a[r * (ndim + 1) + ndim];
        yp[r] = acc - mc[r];
    }
}
