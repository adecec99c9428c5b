/* Legacy Keras functional graphs (CVPR 2018 / MICCAI 2018 files, spec §3.5): the layer list in model_config
 * is interpreted generically -- weights by layer name from the HDF5 file, topology from `inbound_nodes`,
 * never from the auto-generated layer numbers.  The custom layers have empty configs; their behaviour is the
 * legacy code's defaults (spec §3.5 table). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

typedef struct kbuild {
    vxm_context *ctx;
    const vxm_model *m;
    vxm_graph *g; /* NULL while only validating at load time */
    int ndim;
    int shape[3];
    const cJSON *layers;
    int nlayers;
    const cJSON **layer;
    int *node;  /* graph node of each layer, -1 = not built */
    int *scale; /* downsampling factor of each layer's output relative to the input (for the divisor) */
    int *uses;  /* number of inbound references to each layer */
    vxm_status st;
} kbuild;

static const char *str_item(const cJSON *o, const char *key)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

static int find_layer(const kbuild *b, const char *name)
{
    for (int i = 0; i < b->nlayers; i++) {
        const char *n = str_item(b->layer[i], "name");
        if (n && !strcmp(n, name))
            return i;
    }
    return -1;
}

static vxm_status fail(kbuild *b, vxm_status code, const char *fmt, const char *a, const char *c)
{
    if (!b->st) {
        char msg[512];
        snprintf(msg, sizeof msg, fmt, a, c ? c : "");
        b->st = vxm_error(b->ctx, code, b->m->path, "%s", msg);
    }
    return b->st;
}

/* Inbound layer indices of the layer's single node (these graphs call every layer once). */
static int inbound(kbuild *b, int li, int *in, int max)
{
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(b->layer[li], "inbound_nodes");
    int n = 0;
    if (!cJSON_IsArray(nodes) || cJSON_GetArraySize(nodes) == 0)
        return 0;
    if (cJSON_GetArraySize(nodes) > 1) {
        fail(b, VXM_EUNSUPPORTED, "layer %s is called more than once (shared layers are not supported)",
             str_item(b->layer[li], "name"), NULL);
        return -1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetArrayItem(nodes, 0))
    {
        const cJSON *nm = cJSON_GetArrayItem(e, 0);
        int k = cJSON_IsString(nm) ? find_layer(b, nm->valuestring) : -1;
        if (k < 0 || n >= max) {
            fail(b, VXM_EFORMAT, "layer %s has a bad inbound node", str_item(b->layer[li], "name"), NULL);
            return -1;
        }
        in[n++] = k;
    }
    return n;
}

static int int_list3(const cJSON *cfg, const char *key, int def, int ndim, int out[3])
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    for (int d = 0; d < 3; d++)
        out[d] = 1;
    if (!j) {
        for (int d = 3 - ndim; d < 3; d++)
            out[d] = def;
        return 0;
    }
    if (cJSON_IsNumber(j)) {
        for (int d = 3 - ndim; d < 3; d++)
            out[d] = (int)j->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != ndim)
        return -1;
    for (int d = 0; d < ndim; d++)
        out[3 - ndim + d] = (int)cJSON_GetArrayItem(j, d)->valuedouble;
    return 0;
}

static int emit(kbuild *b, vxm_node *n)
{
    if (!b->g)
        return 0; /* validation pass */
    int i = vxm_graph_add(b->g, n);
    if (i < 0)
        fail(b, VXM_ENOMEM, "out of memory building %s", n->name, NULL);
    return i;
}

static const vxm_node *node_of(const kbuild *b, int li)
{
    return b->g ? &b->g->nodes[b->node[li]] : NULL;
}

static int build_layer(kbuild *b, int li, int depth);

static vxm_node start_node(kbuild *b, int li, vxm_op op, const int *in, int nin)
{
    vxm_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    snprintf(n.name, sizeof n.name, "%s", str_item(b->layer[li], "name"));
    n.n_in = nin > 2 ? 2 : nin;
    for (int k = 0; k < n.n_in; k++)
        n.in[k] = b->node[in[k]];
    if (b->g && nin > 0) {
        memcpy(n.shape, node_of(b, in[0])->shape, sizeof n.shape);
        n.channels = node_of(b, in[0])->channels;
    }
    return n;
}

static int build_conv(kbuild *b, int li, const cJSON *cfg, int in)
{
    const char *name = str_item(b->layer[li], "name");
    const char *pad = str_item(cfg, "padding"), *act = str_item(cfg, "activation");
    const cJSON *filters = cJSON_GetObjectItemCaseSensitive(cfg, "filters");
    int k[3], s[3], dil[3];
    if (int_list3(cfg, "kernel_size", 3, b->ndim, k) || int_list3(cfg, "strides", 1, b->ndim, s) ||
        int_list3(cfg, "dilation_rate", 1, b->ndim, dil) || !cJSON_IsNumber(filters))
        return fail(b, VXM_EFORMAT, "conv layer %s has a malformed config", name, NULL), -1;
    if (!pad || strcmp(pad, "same") || (act && strcmp(act, "linear")) || dil[0] * dil[1] * dil[2] != 1)
        return fail(b, VXM_EUNSUPPORTED, "conv layer %s: only padding 'same', linear activation, dilation 1%s", name,
                    NULL),
               -1;
    int cout = (int)filters->valuedouble;
    const vxm_h5_layer *L = vxm_keras_find_layer(b->m->file, name);
    if (!L || L->nweights != 2 || L->weights[0].rank != b->ndim + 2 || L->weights[0].dims[b->ndim + 1] != cout ||
        L->weights[1].numel != (size_t)cout)
        return fail(b, VXM_EFORMAT, "conv layer %s: kernel/bias missing or of the wrong shape", name, NULL), -1;
    for (int d = 3 - b->ndim; d < 3; d++)
        if (L->weights[0].dims[d - (3 - b->ndim)] != k[d])
            return fail(b, VXM_EFORMAT, "conv layer %s: kernel size differs from its config", name, NULL), -1;
    b->scale[li] = b->scale[in] * s[2];
    if (!b->g)
        return 0; /* validation pass */
    if (L->weights[0].dims[b->ndim] != node_of(b, in)->channels)
        return fail(b, VXM_EFORMAT, "conv layer %s: kernel input channels do not match its input", name, NULL), -1;
    int r = vxm_graph_add_conv(b->g, b->node[in], name, k, s, cout, 0, 0.0f, L->weights[0].data,
                               L->weights[1].data);
    if (r < 0)
        fail(b, VXM_ENOMEM, "out of memory building %s", name, NULL);
    return r;
}

/* LeakyReLU right after a conv that feeds nothing else is fused into that conv (one pass less). */
static int build_leaky(kbuild *b, int li, const cJSON *cfg, int in)
{
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(cfg, "alpha");
    float a = cJSON_IsNumber(alpha) ? (float)alpha->valuedouble : 0.3f; /* Keras' default alpha */
    b->scale[li] = b->scale[in];
    if (b->g && node_of(b, in)->op == VXM_OP_CONV && !node_of(b, in)->p.conv.leaky && b->uses[in] == 1) {
        vxm_node *c = &b->g->nodes[b->node[in]];
        c->p.conv.leaky = 1;
        c->p.conv.alpha = a;
        return b->node[in];
    }
    vxm_node n = start_node(b, li, VXM_OP_LEAKY, &in, 1);
    n.p.leaky.alpha = a;
    return emit(b, &n);
}

static int build_resample(kbuild *b, int li, const char *cls, const cJSON *cfg, int in)
{
    int f[3];
    int up = strncmp(cls, "UpSampling", 10) == 0;
    if (int_list3(cfg, up ? "size" : "pool_size", 2, b->ndim, f))
        return fail(b, VXM_EFORMAT, "layer %s has a malformed size", str_item(b->layer[li], "name"), NULL), -1;
    if (!up) {
        int st[3];
        const char *pad = str_item(cfg, "padding");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(cfg, "strides");
        if (int_list3(cfg, "strides", 2, b->ndim, st) || (!cJSON_IsNull(js) && js && memcmp(st, f, sizeof f)) ||
            (pad && strcmp(pad, "valid")))
            return fail(b, VXM_EUNSUPPORTED, "max-pooling layer %s: only strides = pool size, 'valid' padding",
                        str_item(b->layer[li], "name"), NULL),
                   -1;
    }
    b->scale[li] = up ? b->scale[in] / f[2] : b->scale[in] * f[2];
    vxm_node n = start_node(b, li, up ? VXM_OP_UPSAMPLE : VXM_OP_MAXPOOL, &in, 1);
    memcpy(n.p.pool.f, f, sizeof f);
    n.p.pool.tie_tol = b->ndim == 3 ? 1e-5f : -1.0f;
    for (int d = 0; d < 3; d++)
        n.shape[d] = up ? n.shape[d] * f[d] : n.shape[d] / f[d];
    return emit(b, &n);
}

static int build_concat(kbuild *b, int li, const cJSON *cfg, const int *in, int nin)
{
    const cJSON *axis = cJSON_GetObjectItemCaseSensitive(cfg, "axis");
    if (cJSON_IsNumber(axis) && axis->valuedouble != -1 && axis->valuedouble != b->ndim + 1)
        return fail(b, VXM_EUNSUPPORTED, "concatenate layer %s: only the channel axis", str_item(b->layer[li], "name"),
                    NULL),
               -1;
    b->scale[li] = b->scale[in[0]];
    int cur = b->node[in[0]];
    for (int k = 1; k < nin; k++) {
        if (b->g && memcmp(b->g->nodes[cur].shape, node_of(b, in[k])->shape, sizeof(int) * 3))
            return fail(b, VXM_ESHAPE, "concatenate layer %s: inputs of different sizes (input size not divisible?)",
                        str_item(b->layer[li], "name"), NULL),
                   -1;
        vxm_node n = start_node(b, li, VXM_OP_CONCAT, in, 0);
        n.in[0] = cur;
        n.in[1] = b->node[in[k]];
        n.n_in = 2;
        if (b->g) {
            memcpy(n.shape, b->g->nodes[cur].shape, sizeof n.shape);
            n.channels = b->g->nodes[cur].channels + node_of(b, in[k])->channels;
        }
        cur = emit(b, &n);
        if (cur < 0)
            return -1;
    }
    return cur;
}

/* The custom VoxelMorph/neuron layers with their legacy defaults (spec §3.5). */
static int build_custom(kbuild *b, int li, const char *cls, const int *in, int nin)
{
    const char *name = str_item(b->layer[li], "name");
    int want = (!strcmp(cls, "SpatialTransformer") || !strcmp(cls, "Sample")) ? 2 : 1;
    if (nin != want)
        return fail(b, VXM_EFORMAT, "layer %s (%s) has the wrong number of inputs", name, cls), -1;
    b->scale[li] = b->scale[in[want - 1]];
    vxm_node n;
    if (!strcmp(cls, "SpatialTransformer")) {
        n = start_node(b, li, VXM_OP_TRANSFORM, in, 2);
        if (b->g) {
            memcpy(n.shape, node_of(b, in[1])->shape, sizeof n.shape); /* output takes the field's shape */
            if (node_of(b, in[1])->channels != b->ndim)
                return fail(b, VXM_EFORMAT, "transformer %s: the field does not have one channel per axis", name,
                            NULL),
                       -1;
        }
        n.p.transform.interp = VXM_INTERP_LINEAR;
        b->scale[li] = b->scale[in[1]];
    } else if (!strcmp(cls, "Sample")) {
        n = start_node(b, li, VXM_OP_SAMPLE, in, 2);
        vxm_node z = start_node(b, li, VXM_OP_NOISE, in, 1);
        z.n_in = 0;
        n.in[2] = emit(b, &z); /* the noise the executor draws for sampling mode */
        n.n_in = 3;
    } else if (!strcmp(cls, "VecInt")) {
        n = start_node(b, li, VXM_OP_VECINT, in, 1);
        n.p.vecint.steps = 7;
    } else if (!strcmp(cls, "Rescale")) {
        n = start_node(b, li, VXM_OP_SCALE, in, 1);
        n.p.scale.s = 2.0f; /* legacy RescaleDouble */
    } else { /* Resize: legacy ResizeDouble, zoom 2 with the i/f coordinate mapping (spec §6.2) */
        n = start_node(b, li, VXM_OP_RESIZE, in, 1);
        n.p.resize.map = VXM_RESIZE_LEGACY;
        b->scale[li] = b->scale[in[0]] / 2;
        for (int d = 0; d < 3; d++) {
            int on = d >= 3 - b->ndim;
            n.p.resize.factor[d] = on ? 2.0f : 1.0f;
            n.shape[d] = on ? n.shape[d] * 2 : n.shape[d];
        }
    }
    return emit(b, &n);
}

static int build_layer(kbuild *b, int li, int depth)
{
    if (b->st)
        return -1;
    if (b->node[li] != -1)
        return b->node[li];
    if (depth > 10000)
        return fail(b, VXM_EFORMAT, "layer graph has a cycle at %s", str_item(b->layer[li], "name"), NULL), -1;
    const char *cls = str_item(b->layer[li], "class_name");
    const char *name = str_item(b->layer[li], "name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(b->layer[li], "config");
    int in[8], nin = inbound(b, li, in, 8);
    if (nin < 0 || !cls || !name)
        return fail(b, VXM_EFORMAT, "malformed layer %s", name ? name : "?", NULL), -1;
    for (int k = 0; k < nin; k++)
        if (build_layer(b, in[k], depth + 1) < 0 && b->st)
            return -1;
    int r;
    if (!strcmp(cls, "InputLayer")) {
        return fail(b, VXM_EFORMAT, "input layer %s is not among the model inputs", name, NULL), -1;
    } else if (!strncmp(cls, "Conv", 4) && (cls[4] == '2' || cls[4] == '3') && !strcmp(cls + 5, "D")) {
        r = nin == 1 ? build_conv(b, li, cfg, in[0]) : -1;
    } else if (!strcmp(cls, "LeakyReLU")) {
        r = nin == 1 ? build_leaky(b, li, cfg, in[0]) : -1;
    } else if (!strncmp(cls, "UpSampling", 10) || !strncmp(cls, "MaxPooling", 10)) {
        r = nin == 1 ? build_resample(b, li, cls, cfg, in[0]) : -1;
    } else if (!strcmp(cls, "Concatenate")) {
        r = nin >= 2 ? build_concat(b, li, cfg, in, nin) : -1;
    } else if (!strcmp(cls, "SpatialTransformer") || !strcmp(cls, "Sample") || !strcmp(cls, "VecInt") ||
               !strcmp(cls, "Rescale") || !strcmp(cls, "Resize")) {
        r = build_custom(b, li, cls, in, nin);
    } else {
        return fail(b, VXM_EUNSUPPORTED, "layer %s of class %s is not supported", name, cls), -1;
    }
    if (r < 0 && !b->st)
        fail(b, VXM_EFORMAT, "layer %s (%s) has the wrong number of inputs", name, cls);
    b->node[li] = r < 0 ? -1 : (b->g ? r : 0);
    if (!b->g && !b->st)
        b->node[li] = 0; /* validation pass: mark as built */
    return r;
}

/* The model's inputs (source, target) and the transformer among its outputs. */
static int io_layers(kbuild *b, int inputs[2], int *transformer)
{
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(b->m->keras_graph, "config");
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(cfg, "input_layers");
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(cfg, "output_layers");
    if (!cJSON_IsArray(ins) || cJSON_GetArraySize(ins) != 2 || !cJSON_IsArray(outs))
        return fail(b, VXM_EUNSUPPORTED, "not a registration graph: expected two inputs (moving, fixed)%s", "", NULL);
    for (int k = 0; k < 2; k++) {
        const cJSON *nm = cJSON_GetArrayItem(cJSON_GetArrayItem(ins, k), 0);
        inputs[k] = cJSON_IsString(nm) ? find_layer(b, nm->valuestring) : -1;
        if (inputs[k] < 0)
            return fail(b, VXM_EFORMAT, "input layer missing from the layer list%s", "", NULL);
    }
    *transformer = -1;
    const cJSON *o;
    cJSON_ArrayForEach(o, outs)
    {
        const cJSON *nm = cJSON_GetArrayItem(o, 0);
        int k = cJSON_IsString(nm) ? find_layer(b, nm->valuestring) : -1;
        const char *cls = k >= 0 ? str_item(b->layer[k], "class_name") : NULL;
        if (cls && !strcmp(cls, "SpatialTransformer") && *transformer < 0)
            *transformer = k;
    }
    if (*transformer < 0)
        return fail(b, VXM_EUNSUPPORTED, "not a registration graph: no SpatialTransformer among the outputs%s", "",
                    NULL);
    return VXM_OK;
}

static int input_channels(const cJSON *layer, int *ndim)
{
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(layer, "config");
    const cJSON *shp = cJSON_GetObjectItemCaseSensitive(cfg, "batch_input_shape");
    int n = cJSON_IsArray(shp) ? cJSON_GetArraySize(shp) : 0;
    if (n < 4 || n > 5)
        return -1;
    *ndim = n - 2;
    const cJSON *c = cJSON_GetArrayItem(shp, n - 1);
    return cJSON_IsNumber(c) ? (int)c->valuedouble : -1;
}

static vxm_status run_builder(kbuild *b, int *moved, int *warp)
{
    int inputs[2], tr;
    if (io_layers(b, inputs, &tr))
        return b->st;
    for (int i = 0; i < b->nlayers; i++) {
        b->node[i] = -1;
        b->scale[i] = 1;
    }
    for (int k = 0; k < 2; k++) {
        int nd, ch = input_channels(b->layer[inputs[k]], &nd);
        if (ch < 1)
            return fail(b, VXM_EFORMAT, "input layer %s has no usable batch_input_shape",
                        str_item(b->layer[inputs[k]], "name"), NULL);
        vxm_node n;
        memset(&n, 0, sizeof n);
        n.op = VXM_OP_INPUT;
        snprintf(n.name, sizeof n.name, "%s", str_item(b->layer[inputs[k]], "name"));
        memcpy(n.shape, b->shape, sizeof n.shape);
        n.channels = ch;
        n.p.input.index = k;
        int r = emit(b, &n);
        if (r < 0)
            return b->st;
        b->node[inputs[k]] = r;
    }
    *moved = build_layer(b, tr, 0);
    int tin[2];
    if (!b->st && inbound(b, tr, tin, 2) == 2)
        *warp = b->node[tin[1]];
    return b->st;
}

static vxm_status kbuild_init(kbuild *b, vxm_context *ctx, const vxm_model *m)
{
    memset(b, 0, sizeof *b);
    b->ctx = ctx;
    b->m = m;
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(m->keras_graph, "config");
    b->layers = cJSON_GetObjectItemCaseSensitive(cfg, "layers");
    if (!cJSON_IsArray(b->layers))
        return vxm_error(ctx, VXM_EFORMAT, m->path, "model_config has no layer list");
    b->nlayers = cJSON_GetArraySize(b->layers);
    b->layer = calloc((size_t)b->nlayers + 1, sizeof *b->layer);
    b->node = calloc((size_t)b->nlayers + 1, sizeof *b->node);
    b->scale = calloc((size_t)b->nlayers + 1, sizeof *b->scale);
    b->uses = calloc((size_t)b->nlayers + 1, sizeof *b->uses);
    if (!b->layer || !b->node || !b->scale || !b->uses)
        return vxm_error(ctx, VXM_ENOMEM, m->path, "out of memory");
    int i = 0;
    const cJSON *L;
    cJSON_ArrayForEach(L, b->layers) b->layer[i++] = L;
    for (i = 0; i < b->nlayers; i++) {
        int in[8], n = inbound(b, i, in, 8);
        for (int k = 0; k < n; k++)
            b->uses[in[k]]++;
    }
    return b->st;
}

static void kbuild_free(kbuild *b)
{
    free(b->layer);
    free(b->node);
    free(b->scale);
    free(b->uses);
}

vxm_status vxm_keras_graph_inspect(vxm_context *ctx, vxm_model *m)
{
    kbuild b;
    vxm_status st = kbuild_init(&b, ctx, m);
    int inputs[2], tr, nd = 0;
    if (!st && !(st = io_layers(&b, inputs, &tr))) {
        m->src_feats = input_channels(b.layer[inputs[0]], &nd);
        m->trg_feats = input_channels(b.layer[inputs[1]], &nd);
        m->ndim = nd;
        const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(b.layer[inputs[0]], "config");
        const cJSON *shp = cJSON_GetObjectItemCaseSensitive(cfg, "batch_input_shape");
        m->inshape[0] = m->inshape[1] = m->inshape[2] = 1;
        for (int d = 0; d < nd; d++) {
            const cJSON *v = cJSON_GetArrayItem(shp, d + 1);
            m->inshape[3 - nd + d] = cJSON_IsNumber(v) ? (int)v->valuedouble : 0;
        }
        b.ndim = nd;
        int moved = -1, warp = -1;
        if (m->src_feats < 1 || m->trg_feats < 1)
            st = vxm_error(ctx, VXM_EFORMAT, m->path, "model inputs have no channel count");
        else
            st = run_builder(&b, &moved, &warp); /* validation pass: every needed layer is understood */
        int maxscale = 1;
        for (int i = 0; i < b.nlayers; i++)
            if (b.scale[i] > maxscale)
                maxscale = b.scale[i];
        m->divisor = maxscale;
    }
    kbuild_free(&b);
    return st;
}

vxm_status vxm_keras_graph_build(vxm_context *ctx, const vxm_model *m, int ndim, const int shape[3],
                                 vxm_graph **out)
{
    *out = NULL;
    if (ndim != m->ndim)
        return vxm_error(ctx, VXM_ESHAPE, m->path, "model is %d-D but the images are %d-D", m->ndim, ndim);
    for (int d = 3 - ndim; d < 3; d++)
        if (shape[d] % m->divisor)
            return vxm_error(ctx, VXM_ESHAPE, m->path, "input size %d along axis %d is not divisible by %d", shape[d],
                             d - (3 - ndim), m->divisor);
    kbuild b;
    vxm_status st = kbuild_init(&b, ctx, m);
    int moved = -1, warp = -1;
    if (!st) {
        b.ndim = ndim;
        memcpy(b.shape, shape, sizeof b.shape);
        b.g = vxm_graph_new(ndim);
        st = b.g ? run_builder(&b, &moved, &warp) : vxm_error(ctx, VXM_ENOMEM, m->path, "out of memory");
    }
    if (!st && memcmp(b.g->nodes[warp].shape, shape, sizeof b.shape))
        st = vxm_error(ctx, VXM_ESHAPE, m->path, "the graph's warp does not have the input's shape");
    if (st) {
        vxm_graph_free(b.g);
    } else {
        b.g->out_moved = moved;
        b.g->out_warp = warp;
        *out = b.g;
    }
    kbuild_free(&b);
    return st;
}
