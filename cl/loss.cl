/* Losses of training doc §2 (voxelmorph/tf/losses.py), forward terms and backward, float32 like TF.  A loss value is
 * the deterministic sum (01_reduce.cl) of per-element terms written as vxm_acc, finished by vxm_loss_final. */

/* ---- MSE (§2.2): mean (a - b)^2 ---------------------------------------------------------------------------- */
__kernel void vxm_mse_terms(__global const float *a, __global const float *b, __global vxm_acc *terms, ulong n)
{
    ulong i = get_global_id(0);
    if (i >= n)
        return;
    float d = a[i] - b[i];
    terms[i] = vxm_acc_of(d * d);
}

/* da = (2 (a - b)) * k, k = scale / numel */
__kernel void vxm_mse_backward(__global const float *a, __global const float *b, __global float *da, float k, ulong n)
{
    ulong i = get_global_id(0);
    if (i < n)
        da[i] = (2.0f * (a[i] - b[i])) * k;
}

/* ---- forward differences along the last ndim axes (Grad §2.4; KL's precision term §2.5) -------------------- */

/* Stride (in floats) of axis a and whether element (x0, x1, x2) has a successor along it. */
static inline int vxm_diff_axis(int a, int x0, int x1, int x2, int n0, int n1, int n2, int nch, ulong *stride)
{
    int x = a == 0 ? x0 : a == 1 ? x1 : x2;
    int n = a == 0 ? n0 : a == 1 ? n1 : n2;
    *stride = a == 0 ? (ulong)n1 * (ulong)n2 * (ulong)nch : a == 1 ? (ulong)n2 * (ulong)nch : (ulong)nch;
    return x < n - 1;
}

/* terms[e*nq + q0 + d] = |D_d y| (l1) or (D_d y)^2 at element e where the difference along axis 3-ndim+d exists,
 * else 0. */
__kernel void vxm_diff_terms(__global const float *y, __global vxm_acc *terms, int n0, int n1, int n2, int nch,
                             int ndim, int l1, uint nq, uint q0, ulong n)
{
    ulong e = get_global_id(0);
    if (e >= n)
        return;
    int x0, x1, x2;
    vxm_unravel((uint)(e / (ulong)nch), n1, n2, &x0, &x1, &x2);
    for (int d = 0; d < ndim; d++) {
        ulong s;
        float t = 0.0f;
        if (vxm_diff_axis(3 - ndim + d, x0, x1, x2, n0, n1, n2, nch, &s)) {
            float df = y[e + s] - y[e];
            t = l1 ? fabs(df) : df * df;
        }
        terms[e * nq + q0 + d] = vxm_acc_of(t);
    }
}

/* Derivative of the l1 / l2 penalty: sign (0 at 0, tf.abs) or 2 d. */
static inline float vxm_pen_grad(float df, int l1)
{
    return l1 ? (df > 0.0f ? 1.0f : df < 0.0f ? -1.0f : 0.0f) : 2.0f * df;
}

/* dy[e] = sum_d k_d (P'(D_d y at e - s_d) - P'(D_d y at e)), k_d = scale * d(loss)/d(sum of axis-d terms). */
__kernel void vxm_diff_backward(__global const float *y, __global float *dy, int n0, int n1, int n2, int nch,
                                int ndim, int l1, float4 k, ulong n)
{
    ulong e = get_global_id(0);
    if (e >= n)
        return;
    int x0, x1, x2;
    vxm_unravel((uint)(e / (ulong)nch), n1, n2, &x0, &x1, &x2);
    float kd[4] = {k.s0, k.s1, k.s2, k.s3};
    float acc = 0.0f;
    for (int d = 0; d < ndim; d++) {
        int a = 3 - ndim + d;
        ulong s;
        float gd = 0.0f;
        if (vxm_diff_axis(a, x0, x1, x2, n0, n1, n2, nch, &s))
            gd -= vxm_pen_grad(y[e + s] - y[e], l1);
        int x = a == 0 ? x0 : a == 1 ? x1 : x2;
        if (x > 0)
            gd += vxm_pen_grad(y[e] - y[e - s], l1);
        acc += kd[d] * gd;
    }
    dy[e] = acc;
}

/* ---- Dice (§2.3): -mean_l divide_no_nan(2 sum yt yp, sum (yt + yp)) --------------------------------------- */

/* Grid (voxels, labels): terms[v*2L + l] = yt yp, terms[v*2L + L + l] = yt + yp. */
__kernel void vxm_dice_terms(__global const float *yt, __global const float *yp, __global vxm_acc *terms, int nl,
                             uint nvox)
{
    uint v = get_global_id(0);
    int l = (int)get_global_id(1);
    if (v >= nvox)
        return;
    ulong i = (ulong)v * (ulong)nl + (ulong)l;
    terms[i + (ulong)v * (ulong)nl] = vxm_acc_of(yt[i] * yp[i]);
    terms[i + (ulong)v * (ulong)nl + (ulong)nl] = vxm_acc_of(yt[i] + yp[i]);
}

/* TF gradients of divide_no_nan (0 where the denominator is 0): d top = k / bottom, d bottom = k (-top/bottom)/bottom,
 * k = -scale / L; top = 2 sum yt yp. */
__kernel void vxm_dice_backward(__global const float *yt, __global const vxm_acc *sums, __global float *dp, int nl,
                                float k, ulong n)
{
    ulong i = get_global_id(0);
    if (i >= n)
        return;
    int l = (int)(i % (ulong)nl);
    float top = 2.0f * vxm_acc_float(sums[l]), bottom = vxm_acc_float(sums[nl + l]);
    float g = 0.0f;
    if (bottom != 0.0f) {
        float dtop = k / bottom;
        float dbottom = k * ((-top / bottom) / bottom);
        g = (2.0f * dtop) * yt[i] + dbottom;
    }
    dp[i] = g;
}

/* ---- KL (§2.5) ------------------------------------------------------------------------------------------------ */

/* D: number of in-bounds face neighbours along the last nd axes (SAME conv of ones with the adjacency filter). */
static inline float vxm_degree(int x0, int x1, int x2, int n0, int n1, int n2, int nd)
{
    int x[3] = {x0, x1, x2}, n[3] = {n0, n1, n2}, deg = 0;
    for (int a = 3 - nd; a < 3; a++)
        deg += (x[a] > 0) + (x[a] < n[a] - 1);
    return (float)deg;
}

/* lambda D at element e of a field with nd channels */
static inline float vxm_kl_lambda_degree(ulong e, int n0, int n1, int n2, int nd, float lambda)
{
    int x0, x1, x2;
    vxm_unravel((uint)(e / (ulong)nd), n1, n2, &x0, &x1, &x2);
    return lambda * vxm_degree(x0, x1, x2, n0, n1, n2, nd);
}

/* terms[e*nq] = lambda D exp(s) - s */
__kernel void vxm_kl_sigma_terms(__global const float *s, __global vxm_acc *terms, int n0, int n1, int n2, int nd,
                                 float lambda, uint nq, ulong n)
{
    ulong e = get_global_id(0);
    if (e >= n)
        return;
    float ld = vxm_kl_lambda_degree(e, n0, n1, n2, nd, lambda);
    terms[e * nq] = vxm_acc_of(ld * exp(s[e]) - s[e]);
}

/* ds = (lambda D) exp(s) k - k, k = scale 0.5 nd / numel */
__kernel void vxm_kl_sigma_backward(__global const float *s, __global float *ds, int n0, int n1, int n2, int nd,
                                    float lambda, float k, ulong n)
{
    ulong e = get_global_id(0);
    if (e >= n)
        return;
    float ld = vxm_kl_lambda_degree(e, n0, n1, n2, nd, lambda);
    ds[e] = ld * exp(s[e]) * k - k;
}

/* ---- the scalar of each loss from its sums (one work-item) -------------------------------------------------- */
enum { VXM_LOSS_MEAN = 0, VXM_LOSS_NEG_MEAN = 1, VXM_LOSS_GRAD = 2, VXM_LOSS_KL = 3, VXM_LOSS_DICE = 4 };

__kernel void vxm_loss_final(__global const vxm_acc *sums, __global float *out, int kind, int nq, float4 cnt,
                             float lambda)
{
    if (get_global_id(0) != 0)
        return;
    float c[4] = {cnt.s0, cnt.s1, cnt.s2, cnt.s3};
    float r = 0.0f;
    if (kind == VXM_LOSS_MEAN || kind == VXM_LOSS_NEG_MEAN) {
        r = vxm_acc_float(sums[0]) / c[0];
        r = kind == VXM_LOSS_NEG_MEAN ? -r : r;
    } else if (kind == VXM_LOSS_GRAD) { /* (sum_d mean_d) / ndim */
        for (int d = 0; d < nq; d++)
            r += vxm_acc_float(sums[d]) / c[d];
        r /= (float)nq;
    } else if (kind == VXM_LOSS_KL) { /* 0.5 nd (sigma_term + lambda (0.5 sum_d mean_d / nd)) */
        int nd = nq - 1;
        float sm = 0.0f;
        for (int d = 1; d < nq; d++)
            sm += vxm_acc_float(sums[d]) / c[d];
        float prec = lambda * ((0.5f * sm) / (float)nd);
        r = (0.5f * (float)nd) * (vxm_acc_float(sums[0]) / c[0] + prec);
    } else if (kind == VXM_LOSS_DICE) { /* -mean_l divide_no_nan(2 top, bottom) */
        int nl = nq / 2;
        for (int l = 0; l < nl; l++) {
            float top = 2.0f * vxm_acc_float(sums[l]), bottom = vxm_acc_float(sums[nl + l]);
            r += bottom != 0.0f ? top / bottom : 0.0f;
        }
        r = -(r / (float)nl);
    }
    out[0] = r;
}

/* ---- NCC (§2.1) ---------------------------------------------------------------------------------------------
 * Five window sums per voxel (I, J, I^2, J^2, IJ; products in float32 as TF forms them), each over the window AND all
 * channels with zero padding, as three separable box passes in vxm_acc (layout buf[v*5 + q]): axis 2 with the channel
 * sum, axis 1, axis 0 fused with the per-voxel formula.  Window on axis a: offsets lo .. lo + w - 1 (forward lo =
 * -pad_lo; the adjoint used by the backward mirrors it). */
static inline void vxm_box5(__global const vxm_acc *in, uint v, int x, int n, int stride, int lo, int w,
                            vxm_acc *s)
{
    for (int q = 0; q < 5; q++)
        s[q] = vxm_acc_zero();
    for (int t = 0; t < w; t++) { /* uniform trip count, bound checked inside */
        int xx = x + lo + t;
        if (xx >= 0 && xx < n) {
            __global const vxm_acc *p = in + ((long)v + (long)(lo + t) * (long)stride) * 5;
            for (int q = 0; q < 5; q++)
                s[q] = vxm_acc_add(s[q], p[q]);
        }
    }
}

__kernel void vxm_ncc_sum_first(__global const float *I, __global const float *J, __global vxm_acc *out, int n1,
                                int n2, int nch, int lo, int w, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int x0, x1, x2;
    vxm_unravel(v, n1, n2, &x0, &x1, &x2);
    vxm_acc s[5];
    for (int q = 0; q < 5; q++)
        s[q] = vxm_acc_zero();
    for (int t = 0; t < w; t++) {
        int k = x2 + lo + t;
        if (k >= 0 && k < n2) {
            ulong base = ((ulong)v + (ulong)(long)(lo + t)) * (ulong)nch;
            for (int c = 0; c < nch; c++) {
                float i = I[base + c], j = J[base + c];
                s[0] = vxm_acc_add(s[0], vxm_acc_of(i));
                s[1] = vxm_acc_add(s[1], vxm_acc_of(j));
                s[2] = vxm_acc_add(s[2], vxm_acc_of(i * i));
                s[3] = vxm_acc_add(s[3], vxm_acc_of(j * j));
                s[4] = vxm_acc_add(s[4], vxm_acc_of(i * j));
            }
        }
    }
    for (int q = 0; q < 5; q++)
        out[(ulong)v * 5 + q] = s[q];
}

/* Box pass along `axis` (0 or 1; its coordinate x, size n, voxel stride). */
static inline void vxm_box5_axis(__global const vxm_acc *in, uint v, int axis, int n0, int n1, int n2, int lo, int w,
                                 vxm_acc *s)
{
    int x0, x1, x2;
    vxm_unravel(v, n1, n2, &x0, &x1, &x2);
    if (axis == 0)
        vxm_box5(in, v, x0, n0, n1 * n2, lo, w, s);
    else if (axis == 1)
        vxm_box5(in, v, x1, n1, n2, lo, w, s);
    else
        vxm_box5(in, v, x2, n2, 1, lo, w, s);
}

__kernel void vxm_ncc_box(__global const vxm_acc *in, __global vxm_acc *out, int n0, int n1, int n2, int axis, int lo,
                          int w, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    vxm_acc s[5];
    vxm_box5_axis(in, v, axis, n0, n1, n2, lo, w, s);
    for (int q = 0; q < 5; q++)
        out[(ulong)v * 5 + q] = s[q];
}

/* TF's formula in its exact order, float32 (§2.1): u = S/W; cross = S_IJ - uJ S_I - uI S_J + uI uJ W;
 * var = S_XX - 2 uX S_X + uX uX W; each max(., eps); cc = (cross/varI)(cross/varJ). */
typedef struct vxm_ncc_vox {
    float uI, uJ, cross, varI, varJ, cm, vIm, vJm;
} vxm_ncc_vox;

static inline float vxm_ncc_eval(const float *S, float W, float eps, vxm_ncc_vox *r)
{
    r->uI = S[0] / W;
    r->uJ = S[1] / W;
    r->cross = ((S[4] - r->uJ * S[0]) - r->uI * S[1]) + (r->uI * r->uJ) * W;
    r->varI = (S[2] - (2.0f * r->uI) * S[0]) + (r->uI * r->uI) * W;
    r->varJ = (S[3] - (2.0f * r->uJ) * S[1]) + (r->uJ * r->uJ) * W;
    r->cm = r->cross >= eps ? r->cross : eps;
    r->vIm = r->varI >= eps ? r->varI : eps;
    r->vJm = r->varJ >= eps ? r->varJ : eps;
    return (r->cm / r->vIm) * (r->cm / r->vJm);
}

static inline void vxm_ncc_sums(__global const vxm_acc *in, uint v, int n0, int n1, int n2, int lo, int w, float *S)
{
    vxm_acc s[5];
    vxm_box5_axis(in, v, 0, n0, n1, n2, lo, w, s);
    for (int q = 0; q < 5; q++)
        S[q] = vxm_acc_float(s[q]);
}

/* Last (axis 0) pass, then cc per voxel into terms[v]. */
__kernel void vxm_ncc_cc(__global const vxm_acc *in, __global vxm_acc *terms, int n0, int n1, int n2, int lo, int w,
                         float W, float eps, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    float S[5];
    vxm_ncc_sums(in, v, n0, n1, n2, lo, w, S);
    vxm_ncc_vox r;
    terms[v] = vxm_acc_of(vxm_ncc_eval(S, W, eps, &r));
}

/* Last pass, then d(g cc)/dS for the five sums (TF's op gradients; tf.maximum passes where x >= eps). */
__kernel void vxm_ncc_deriv(__global const vxm_acc *in, __global vxm_acc *out, int n0, int n1, int n2, int lo, int w,
                            float W, float eps, float g, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    float S[5];
    vxm_ncc_sums(in, v, n0, n1, n2, lo, w, S);
    vxm_ncc_vox r;
    vxm_ncc_eval(S, W, eps, &r);
    float a = r.cm / r.vIm, b = r.cm / r.vJm;
    float ga = g * b, gb = g * a;
    float dcm = ga / r.vIm + gb / r.vJm;
    float dvI = r.varI >= eps ? ga * ((-r.cm / r.vIm) / r.vIm) : 0.0f;
    float dvJ = r.varJ >= eps ? gb * ((-r.cm / r.vJm) / r.vJm) : 0.0f;
    float dc = r.cross >= eps ? dcm : 0.0f;
    /* cross = ((S_IJ - uJ S_I) - uI S_J) + (uI uJ) W */
    float dSI = -dc * r.uJ, dSJ = -dc * r.uI;
    float duI = -dc * S[1] + (dc * W) * r.uJ;
    float duJ = -dc * S[0] + (dc * W) * r.uI;
    /* varX = (S_XX - (2 uX) S_X) + (uX uX) W */
    dSI += -dvI * (2.0f * r.uI);
    duI += 2.0f * (-dvI * S[0]) + 2.0f * ((dvI * W) * r.uI);
    dSJ += -dvJ * (2.0f * r.uJ);
    duJ += 2.0f * (-dvJ * S[1]) + 2.0f * ((dvJ * W) * r.uJ);
    /* uX = S_X / W */
    dSI += duI / W;
    dSJ += duJ / W;
    __global vxm_acc *o = out + (ulong)v * 5;
    o[0] = vxm_acc_of(dSI);
    o[1] = vxm_acc_of(dSJ);
    o[2] = vxm_acc_of(dvI);
    o[3] = vxm_acc_of(dvJ);
    o[4] = vxm_acc_of(dc);
}

/* Last adjoint pass (the window sums' transpose gathers the derivative maps B over the mirrored window), then the
 * chain through the products: dI = B_I + B_II (2 I) + B_IJ J, dJ = B_J + B_JJ (2 J) + B_IJ I, every channel. */
__kernel void vxm_ncc_grad(__global const vxm_acc *in, __global const float *I, __global const float *J,
                           __global float *dI, __global float *dJ, int want_I, int want_J, int n0, int n1, int n2,
                           int nch, int lo, int w, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    float B[5];
    vxm_ncc_sums(in, v, n0, n1, n2, lo, w, B);
    ulong base = (ulong)v * (ulong)nch;
    for (int c = 0; c < nch; c++) {
        float i = I[base + c], j = J[base + c];
        if (want_I)
            dI[base + c] = (B[0] + B[2] * (2.0f * i)) + B[4] * j;
        if (want_J)
            dJ[base + c] = (B[1] + B[3] * (2.0f * j)) + B[4] * i;
    }
}
