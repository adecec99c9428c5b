/* Instantiates a VxmDense model for one input shape (spec §3.1 U-Net, §3.3 flow pipeline). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph/hyper.h"
#include "model/model.h"

typedef struct builder {
    vxm_context *ctx;
    const vxm_model *m;
    vxm_graph *g;
    int ndim;
    vxm_status st;
    int hyp; /* HyperVxmDense: the hypernetwork's last Dense node, else -1 */
} builder;

static int push(builder *b, vxm_node *n)
{
    if (b->st)
        return -1;
    int i = vxm_graph_add(b->g, n);
    if (i < 0)
        b->st = vxm_error(b->ctx, VXM_ENOMEM, b->m->path, "out of memory building the graph");
    return i;
}

/* out = a + b, truncated to a node name (names only label layers; truncation is harmless). */
static void name_join(char *out, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > VXM_NODE_NAME_MAX - 1)
        la = VXM_NODE_NAME_MAX - 1;
    if (lb > VXM_NODE_NAME_MAX - 1 - la)
        lb = VXM_NODE_NAME_MAX - 1 - la;
    memmove(out, a, la);
    memcpy(out + la, b, lb);
    out[la + lb] = '\0';
}

static vxm_node node_like(const builder *b, vxm_op op, const char *name, int in0)
{
    vxm_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    name_join(n.name, name, "");
    n.in[0] = in0;
    n.n_in = in0 >= 0 ? 1 : 0;
    if (in0 >= 0) {
        memcpy(n.shape, b->g->nodes[in0].shape, sizeof n.shape);
        n.channels = b->g->nodes[in0].channels;
        n.flags = b->g->nodes[in0].flags & VXM_NODE_GRAD;
    }
    return n;
}

/* Per-axis factor: `f` on the ndim image axes, 1 on the padding axis of 2-D data. */
static void axis_factors(const builder *b, int f, int out[3])
{
    for (int d = 0; d < 3; d++)
        out[d] = d >= 3 - b->ndim ? f : 1;
}

static int add_conv(builder *b, int in, const char *layer, int cout, int leaky)
{
    if (b->st)
        return -1;
    const vxm_h5_layer *L = b->m->file ? vxm_keras_find_layer(b->m->file, layer) : NULL;
    int cin = b->g->nodes[in].channels;
    if (!L && b->m->new_weights) { /* a new model: parameters without values, initialised by the trainer */
        int ksize[3], stride[3] = {1, 1, 1};
        for (int d = 0; d < 3; d++)
            ksize[d] = d >= 3 - b->ndim ? 3 : 1;
        int i = vxm_graph_add_conv(b->g, in, layer, ksize, stride, cout, leaky, 0.2f, NULL, NULL);
        if (i < 0)
            b->st = vxm_error(b->ctx, VXM_ENOMEM, b->m->path, "out of memory building the graph");
        return i;
    }
    if (!L || L->nweights != 2) {
        b->st = vxm_error(b->ctx, VXM_EFORMAT, b->m->path, "layer %s with kernel and bias is missing", layer);
        return -1;
    }
    const vxm_h5_weight *k = &L->weights[0], *bias = &L->weights[1];
    int r = k->rank;
    if (r != b->ndim + 2 || k->dims[r - 2] != cin || k->dims[r - 1] != cout || bias->numel != (size_t)cout) {
        b->st = vxm_error(b->ctx, VXM_EFORMAT, b->m->path,
                          "layer %s: kernel of rank %d with %ld->%ld channels, expected a %d-D conv %d->%d", layer, r,
                          r >= 2 ? k->dims[r - 2] : 0, k->dims[r - 1], b->ndim, cin, cout);
        return -1;
    }
    int ksize[3], stride[3] = {1, 1, 1};
    for (int d = 0; d < 3; d++) {
        int a = d - (3 - b->ndim); /* kernel axis of this spatial axis */
        ksize[d] = a >= 0 ? (int)k->dims[a] : 1;
    }
    /* LeakyReLU(0.2) after every U-Net conv, spec §2.2 */
    int i = vxm_graph_add_conv(b->g, in, layer, ksize, stride, cout, leaky, 0.2f, k->data, bias->data);
    if (i < 0)
        b->st = vxm_error(b->ctx, VXM_ENOMEM, b->m->path, "out of memory building the graph");
    return i;
}

/* The file's weights of `layer`: n tensors of the given ranks, or NULL with b->st set (a new model: NULL, no
 * error, when the file lacks the layer). */
static const vxm_h5_layer *file_layer(builder *b, const char *layer, int n, const int *ranks)
{
    const vxm_h5_layer *L = b->m->file ? vxm_keras_find_layer(b->m->file, layer) : NULL;
    if (!L && b->m->new_weights)
        return NULL;
    int ok = L && L->nweights == n;
    for (int k = 0; ok && k < n; k++)
        ok = L->weights[k].rank == ranks[k];
    if (!ok)
        b->st = vxm_error(b->ctx, VXM_EFORMAT, b->m->path, "layer %s with %d weight tensors is missing", layer, n);
    return ok ? L : NULL;
}

/* HyperVxmDense's hypernetwork (networks.py HyperVxmDense): input <name>_hyp_input (index 4), then nb_hyp_layers
 * Dense(nb_hyp_units, relu) <name>_hyp_dense_<k>, k = 1..; sets b->hyp. */
static void add_hypernet(builder *b, const char *name_input)
{
    const vxm_dense_config *c = &b->m->dense;
    vxm_node in = node_like(b, VXM_OP_INPUT, name_input, -1);
    in.shape[0] = in.shape[1] = in.shape[2] = 1;
    in.channels = c->nb_hyp_params;
    in.p.input.index = 4;
    int x = b->g->in_hyper = push(b, &in);
    static const int ranks[2] = {2, 1};
    char nm[VXM_NODE_NAME_MAX];
    for (int k = 1; k <= c->nb_hyp_layers && !b->st; k++) {
        snprintf(nm, sizeof nm, "%.60s_hyp_dense_%d", c->name, k);
        const vxm_h5_layer *L = file_layer(b, nm, 2, ranks);
        if (b->st)
            return;
        int units = c->nb_hyp_units, fin = b->g->nodes[x].channels;
        if (L && (L->weights[0].dims[0] != fin || L->weights[0].dims[1] != units ||
                  L->weights[1].numel != (size_t)units)) {
            b->st = vxm_error(b->ctx, VXM_EFORMAT, b->m->path, "layer %s: expected a Dense %d->%d", nm, fin, units);
            return;
        }
        x = vxm_graph_add_dense(b->g, x, nm, units, 1, L ? L->weights[0].data : NULL, L ? L->weights[1].data : NULL);
        if (x < 0)
            b->st = vxm_error(b->ctx, VXM_ENOMEM, b->m->path, "out of memory building the graph");
    }
    b->hyp = x;
}

/* A U-Net conv: Conv (add_conv), or for HyperVxmDense a HyperConvFromDense fed by the hypernetwork (§5). */
static int unet_conv(builder *b, int in, const char *layer, int cout)
{
    if (b->hyp < 0 || b->st)
        return add_conv(b, in, layer, cout, 1);
    static const int ranks[4] = {2, 1, 2, 1};
    const vxm_h5_layer *L = file_layer(b, layer, 4, ranks);
    if (b->st)
        return -1;
    int ksize[3];
    long nk = (long)b->g->nodes[in].channels * cout;
    for (int d = 0; d < 3; d++) {
        ksize[d] = d >= 3 - b->ndim ? 3 : 1;
        nk *= ksize[d];
    }
    long units = b->g->nodes[b->hyp].channels;
    if (L && (L->weights[0].dims[0] != units || L->weights[0].dims[1] != nk || L->weights[1].dims[0] != nk ||
              L->weights[2].dims[0] != units || L->weights[2].dims[1] != cout || L->weights[3].dims[0] != cout)) {
        b->st = vxm_error(b->ctx, VXM_EFORMAT, b->m->path,
                          "layer %s: expected a hyper-convolution %d->%d driven by %ld hypernetwork units", layer,
                          b->g->nodes[in].channels, cout, units);
        return -1;
    }
    const float *w[4] = {NULL, NULL, NULL, NULL};
    for (int k = 0; L && k < 4; k++)
        w[k] = L->weights[k].data;
    /* LeakyReLU(0.2) after every U-Net conv (_conv_block), as for VxmDense */
    int i = vxm_graph_add_hyperconv(b->g, in, b->hyp, layer, ksize, cout, 1, 0.2f, w);
    if (i < 0)
        b->st = vxm_error(b->ctx, VXM_ENOMEM, b->m->path, "out of memory building the graph");
    return i;
}

static int add_pool_or_upsample(builder *b, vxm_op op, int in, const char *name)
{
    vxm_node n = node_like(b, op, name, in);
    axis_factors(b, 2, n.p.pool.f);
    /* gradient rule of TF's CPU max-pooling: 3-D to every input within 1e-5 of the max, 2-D to the first (§0) */
    n.p.pool.tie_tol = b->ndim == 3 ? 1e-5f : -1.0f;
    for (int d = 0; d < 3; d++)
        n.shape[d] = op == VXM_OP_MAXPOOL ? n.shape[d] / n.p.pool.f[d] : n.shape[d] * n.p.pool.f[d];
    return push(b, &n);
}

static int add_concat(builder *b, int a, int c, const char *name)
{
    if (b->st)
        return -1; /* a or c may be -1 after an error */
    vxm_node n = node_like(b, VXM_OP_CONCAT, name, a);
    n.in[1] = c;
    n.n_in = 2;
    n.channels += b->g->nodes[c].channels;
    return push(b, &n);
}

static int add_scale(builder *b, int in, float s, const char *name)
{
    vxm_node n = node_like(b, VXM_OP_SCALE, name, in);
    n.p.scale.s = s;
    return push(b, &n);
}

/* RescaleTransform(f) (spec §6.3; graph.c). */
static int add_rescale(builder *b, int in, double f, vxm_resize_mapping map, const char *name)
{
    if (b->st)
        return in;
    int x = vxm_graph_add_rescale(b->g, in, f, map, name);
    if (x < 0)
        b->st = vxm_error(b->ctx, VXM_ENOMEM, b->m->path, "out of memory building the graph");
    return x;
}

static void layer_name(char *out, const builder *b, const char *fmt, int a, int c)
{
    char tail[64];
    snprintf(tail, sizeof tail, fmt, a, c);
    char prefix[VXM_NODE_NAME_MAX];
    name_join(prefix, b->m->dense.name, "_");
    name_join(out, prefix, tail);
}

static int build_unet(builder *b, int x)
{
    const vxm_dense_config *c = &b->m->dense;
    int n = c->conv_per_level, L = vxm_dense_levels(c);
    int S = (int)floor(log2(c->svf_resolution));
    int skips[VXM_MAX_FEATS];
    char nm[VXM_NODE_NAME_MAX];
    for (int l = 0; l < L - 1; l++) {
        for (int k = 0; k < n; k++) {
            layer_name(nm, b, "unet_enc_conv_%d_%d", l, k);
            x = unet_conv(b, x, nm, c->enc[l * n + k]);
        }
        skips[l] = x;
        layer_name(nm, b, "unet_enc_pooling_%d", l, 0);
        x = add_pool_or_upsample(b, VXM_OP_MAXPOOL, x, nm);
    }
    for (int t = 0; t < L - 1; t++) {
        int r = L - 2 - t;
        for (int k = 0; k < n; k++) {
            layer_name(nm, b, "unet_dec_conv_%d_%d", r, k);
            x = unet_conv(b, x, nm, c->dec[t * n + k]);
        }
        if (t < L - 1 - S) {
            layer_name(nm, b, "unet_dec_upsample_%d", r, 0);
            x = add_pool_or_upsample(b, VXM_OP_UPSAMPLE, x, nm);
            layer_name(nm, b, "unet_dec_upsample_%d_concat", r, 0);
            x = add_concat(b, x, skips[r], nm);
        }
    }
    for (int k = c->n_enc; k < c->n_dec; k++) {
        layer_name(nm, b, "unet_dec_final_conv_%d", k - c->n_enc, 0);
        x = unet_conv(b, x, nm, c->dec[k]);
    }
    return x;
}

/* round(inshape / res) with NumPy's half-to-even. */
static int res_size(int n, double res)
{
    return (int)nearbyint(n / res);
}

static vxm_status check_shape(builder *b, const int shape[3])
{
    const vxm_dense_config *c = &b->m->dense;
    int div = vxm_model_size_divisor(b->m);
    for (int d = 3 - b->ndim; d < 3; d++)
        if (shape[d] % div != 0)
            return vxm_error(b->ctx, VXM_ESHAPE, b->m->path,
                             "input size %d along axis %d is not divisible by %d (2^%d U-Net poolings)", shape[d],
                             d - (3 - b->ndim), div, vxm_dense_levels(c) - 1);
    if (c->int_steps == 0 && c->svf_resolution >= 2)
        return vxm_error(b->ctx, VXM_EUNSUPPORTED, b->m->path,
                         "a half-resolution U-Net without integration (int_steps 0) is not supported");
    return VXM_OK;
}

/* VecInt (spec §5) as one node (inference). */
static int add_vecint(builder *b, int v, int steps, const char *name)
{
    vxm_node vi = node_like(b, VXM_OP_VECINT, name, v);
    vi.p.vecint.steps = steps;
    return push(b, &vi);
}

/* VecInt unrolled for training (graph.c): differentiable scale / transform / add nodes. */
static int add_vecint_unrolled(builder *b, int v, int steps, const char *name)
{
    if (b->st)
        return -1;
    int w = vxm_graph_add_vecint_unrolled(b->g, v, steps, name);
    if (w < 0)
        b->st = vxm_error(b->ctx, VXM_ENOMEM, b->m->path, "out of memory building the graph");
    return w;
}

/* SpatialTransformer(linear, fill_value) of img by warp: output on the warp's grid (spec §4). */
static int add_transform(builder *b, int img, int warp, const char *name)
{
    const vxm_dense_config *c = &b->m->dense;
    if (b->st)
        return -1;
    vxm_node tr = node_like(b, VXM_OP_TRANSFORM, name, warp);
    tr.in[0] = img;
    tr.in[1] = warp;
    tr.n_in = 2;
    tr.channels = b->g->nodes[img].channels;
    tr.flags = (b->g->nodes[img].flags | b->g->nodes[warp].flags) & VXM_NODE_GRAD;
    tr.p.transform.interp = VXM_INTERP_LINEAR;
    tr.p.transform.use_fill = c->use_fill;
    tr.p.transform.fill = c->fill_value;
    return push(b, &tr);
}

/* Spec §3.3 steps 6-7: VecInt of the pre-integration field and RescaleTransform back to full resolution.  `pre` is
 * "" or "neg_" (layer names of the bidirectional branch). */
static int integrate(builder *b, int preint, const int shape[3], int training, const char *pre)
{
    const vxm_dense_config *c = &b->m->dense;
    int a0 = 3 - b->ndim, warp = preint;
    char nm[VXM_NODE_NAME_MAX];
    if (c->int_steps <= 0 || b->st)
        return warp;
    snprintf(nm, sizeof nm, "%.60s_%sflow_int", c->name, pre);
    warp = training ? add_vecint_unrolled(b, warp, c->int_steps, nm) : add_vecint(b, warp, c->int_steps, nm);
    if (c->int_resolution > 1 && warp >= 0) {
        snprintf(nm, sizeof nm, "%.60s_%sdiffflow", c->name, pre);
        warp = add_rescale(b, warp, (double)shape[a0] / b->g->nodes[warp].shape[a0], VXM_RESIZE_LINSPACE, nm);
    }
    return warp;
}

vxm_status vxm_dense_build_graph(vxm_context *ctx, const vxm_model *m, int ndim, const int shape[3],
                                 vxm_graph **out)
{
    return vxm_dense_build_graph_ex(ctx, m, ndim, shape, 0, 0, 0, out);
}

vxm_status vxm_dense_build_graph_ex(vxm_context *ctx, const vxm_model *m, int ndim, const int shape[3], int training,
                                    int seg_channels, int seg_full_res, vxm_graph **out)
{
    const vxm_dense_config *c = &m->dense;
    *out = NULL;
    builder b = {ctx, m, NULL, ndim, VXM_OK, -1};
    if (ndim != c->ndim)
        return vxm_error(ctx, VXM_ESHAPE, m->path, "model is %d-D but the images are %d-D", c->ndim, ndim);
    if ((b.st = check_shape(&b, shape)))
        return b.st;
    b.g = vxm_graph_new(ndim);
    if (!b.g)
        return vxm_error(ctx, VXM_ENOMEM, m->path, "out of memory");

    char nm[VXM_NODE_NAME_MAX];
    vxm_node in = node_like(&b, VXM_OP_INPUT, "", -1);
    memcpy(in.shape, shape, sizeof in.shape);
    layer_name(nm, &b, "source_input", 0, 0);
    name_join(in.name, nm, "");
    in.channels = c->src_feats;
    in.p.input.index = 0;
    int src = push(&b, &in);
    layer_name(nm, &b, "target_input", 0, 0);
    name_join(in.name, nm, "");
    in.channels = c->trg_feats;
    in.p.input.index = 1;
    int trg = push(&b, &in);
    if (c->hyper) {
        layer_name(nm, &b, "hyp_input", 0, 0);
        add_hypernet(&b, nm);
    }
    layer_name(nm, &b, "unet_input_concat", 0, 0);
    int x = add_concat(&b, src, trg, nm);
    x = build_unet(&b, x);

    layer_name(nm, &b, "flow", 0, 0);
    int flow = add_conv(&b, x, nm, ndim, 0);
    if (c->use_probs) {
        layer_name(nm, &b, "log_sigma", 0, 0);
        int logsig = add_conv(&b, x, nm, ndim, 0);
        layer_name(nm, &b, "z_sample", 0, 0);
        vxm_node z = node_like(&b, VXM_OP_NOISE, nm, flow);
        z.n_in = 0;
        z.flags = 0;
        int noise = push(&b, &z);
        vxm_node s = node_like(&b, VXM_OP_SAMPLE, nm, flow);
        s.in[1] = logsig;
        s.in[2] = noise;
        s.n_in = 3;
        b.g->out_flow_mean = flow;
        b.g->out_flow_logvar = logsig;
        flow = push(&b, &s);
    }
    if (b.st) {
        vxm_graph_free(b.g);
        return b.st;
    }
    /* Axis 0 of the image decides every rescale factor (spec §3.3 steps 3, 4, 7). */
    int a0 = 3 - ndim;
    int svf0 = res_size(shape[a0], c->svf_resolution);
    int flow0 = b.g->nodes[flow].shape[a0];
    layer_name(nm, &b, "svf_resize", 0, 0);
    if (svf0 != flow0)
        flow = add_rescale(&b, flow, (double)svf0 / flow0, VXM_RESIZE_LINSPACE, nm);
    int preint = flow;
    if (c->int_steps > 0) {
        int int0 = res_size(shape[a0], c->int_resolution);
        if (c->int_resolution > 1 && int0 != svf0) {
            layer_name(nm, &b, "flow_resize", 0, 0);
            preint = add_rescale(&b, preint, (double)int0 / svf0, VXM_RESIZE_LINSPACE, nm);
        }
    }
    b.g->out_preint = preint;
    int warp = integrate(&b, preint, shape, training, "");
    if (!b.st && memcmp(b.g->nodes[warp].shape, shape, sizeof in.shape) != 0)
        b.st = vxm_error(ctx, VXM_ESHAPE, m->path, "model produces a %dx%dx%d warp for a %dx%dx%d input",
                         b.g->nodes[warp].shape[0], b.g->nodes[warp].shape[1], b.g->nodes[warp].shape[2], shape[0],
                         shape[1], shape[2]);
    layer_name(nm, &b, "transformer", 0, 0);
    int moved = add_transform(&b, src, warp, nm);
    if (training && c->bidir && !b.st) {
        /* neg_flow = -preint_flow, negated BEFORE integration (spec §3.3 step 5), warps the target */
        layer_name(nm, &b, "neg_flow", 0, 0);
        int neg = add_scale(&b, preint, -1.0f, nm);
        int neg_warp = integrate(&b, neg, shape, training, "neg_");
        layer_name(nm, &b, "neg_transformer", 0, 0);
        b.g->out_neg_warp = neg_warp;
        b.g->out_neg_moved = add_transform(&b, trg, neg_warp, nm);
    }
    if (training && seg_channels > 0 && !b.st) {
        /* VxmDenseSemiSupervisedSeg (spec §8.2): the source one-hot, strided to half size by the generator, warped
         * linearly by RescaleTransform(1/2) of the final warp (linspace mapping).  SynthMorph (training doc §6.1)
         * warps the full-resolution one-hot map by the final warp itself. */
        vxm_node si = node_like(&b, VXM_OP_INPUT, "", -1);
        for (int d = 0; d < 3; d++)
            si.shape[d] = d >= 3 - ndim && !seg_full_res ? (shape[d] + 1) / 2 : shape[d];
        si.channels = seg_channels;
        for (int k = 2; k < 4; k++) {
            layer_name(nm, &b, k == 2 ? "source_seg_input" : "target_seg_input", 0, 0);
            name_join(si.name, nm, "");
            si.p.input.index = k;
            int id = push(&b, &si);
            if (k == 2)
                b.g->in_seg_source = id;
            else
                b.g->in_seg_target = id;
        }
        layer_name(nm, &b, "seg_resize", 0, 0);
        int half = seg_full_res ? warp : add_rescale(&b, warp, 0.5, VXM_RESIZE_LINSPACE, nm);
        layer_name(nm, &b, "seg_transformer", 0, 0);
        if (!b.st && memcmp(b.g->nodes[half].shape, si.shape, sizeof si.shape))
            b.st = vxm_error(ctx, VXM_ESHAPE, m->path, "the warp does not match the segmentation input");
        if (!b.st)
            b.g->out_seg_moved = add_transform(&b, b.g->in_seg_source, half, nm);
    }
    if (b.st) {
        vxm_graph_free(b.g);
        return b.st;
    }
    b.g->in_source = src;
    b.g->in_target = trg;
    b.g->out_moved = moved;
    b.g->out_warp = warp;
    *out = b.g;
    return VXM_OK;
}
