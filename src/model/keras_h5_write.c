/* Keras 2 HDF5 writer (spec §10.3; training doc §1 "What model.save writes").  The layout and the string
 * encodings copy what TF 2.15 `model.save` + h5py 3 produce (data/train/<case>_model.h5, inspected with h5py):
 *  - root: `model_config` variable-length ASCII string (Keras stores json.dumps(...).encode()), `keras_version`
 *    and `backend` variable-length UTF-8 strings (Keras stores Python str);
 *  - /model_weights: `backend`, `keras_version` variable-length ASCII; `layer_names` a 1-D array of
 *    variable-length ASCII strings (all layers, model order);
 *  - /model_weights/<layer>: `weight_names` a 1-D array of variable-length ASCII strings, or an EMPTY FLOAT64
 *    array for a weightless layer (np.asarray([]) in Keras); datasets <layer>/<kind>:0, contiguous
 *    little-endian float32;
 *  - /model_weights/top_level_model_weights: an empty group (weightless) that TF 2.15 always writes.
 * The vxmcl reader (keras_h5.c) accepts fixed- and variable-length strings alike, and so does Keras, so the
 * exact choice only matters for byte-level mimicry.  No `training_config` / `optimizer_weights`: VxmDense.load
 * ignores them (spec §10).  vxm train's own resume state goes into one extra group (vxm_h5_out_state), which
 * Keras and VxmDense.load never open. */
#include "model/keras_h5_write.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tempfile.h"

#define KERAS_VERSION "2.15.0"
#define KERAS_BACKEND "tensorflow"
#define TOP_LEVEL_GROUP "top_level_model_weights"
#define MAX_NAME 256

/* A name becomes an HDF5 link name: no '/', not "." and not empty. */
static vxm_status check_name(vxm_context *ctx, const char *path, const char *what, const char *s)
{
    if (!s || !*s || strchr(s, '/') || strcmp(s, ".") == 0 || strlen(s) >= MAX_NAME)
        return vxm_error(ctx, VXM_EINVAL, path, "invalid %s name '%s'", what, s ? s : "(null)");
    return VXM_OK;
}

static vxm_status check_weights(vxm_context *ctx, const char *path, const vxm_h5_out_weight *w, int n)
{
    if (n < 0 || (n > 0 && !w))
        return vxm_error(ctx, VXM_EINVAL, path, "invalid weight list");
    for (int i = 0; i < n; i++) {
        vxm_status st;
        if ((st = check_name(ctx, path, "layer", w[i].layer)) || (st = check_name(ctx, path, "weight", w[i].kind)))
            return st;
        if (w[i].rank < 1 || w[i].rank > 5 || !w[i].data)
            return vxm_error(ctx, VXM_EINVAL, path, "weight %s/%s: rank %d or data invalid", w[i].layer,
                             w[i].kind, w[i].rank);
        for (int d = 0; d < w[i].rank; d++)
            if (w[i].dims[d] < 1)
                return vxm_error(ctx, VXM_EINVAL, path, "weight %s/%s: dimension %d is %ld", w[i].layer,
                                 w[i].kind, d, w[i].dims[d]);
        for (int k = 0; k < i; k++)
            if (strcmp(w[k].layer, w[i].layer) == 0 && strcmp(w[k].kind, w[i].kind) == 0)
                return vxm_error(ctx, VXM_EINVAL, path, "weight %s/%s given twice", w[i].layer, w[i].kind);
    }
    return VXM_OK;
}

/* ---- HDF5 pieces; each returns 0 on success, -1 on any HDF5 failure (the caller words the error) ---------- */

/* Writes a variable-length string attribute: scalar when n < 0, else a 1-D array of n strings. */
static int write_str_attr(hid_t obj, const char *name, const char *const *v, int n, H5T_cset_t cset)
{
    hsize_t dim = n < 0 ? 0 : (hsize_t)n;
    hid_t t = H5Tcopy(H5T_C_S1);
    hid_t sp = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    int ok = t >= 0 && sp >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, cset) >= 0;
    hid_t a = ok ? H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    ok = a >= 0 && (n == 0 || H5Awrite(a, t, v) >= 0); /* an empty array has nothing to write */
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    return ok ? 0 : -1;
}

static int write_scalar_str_attr(hid_t obj, const char *name, const char *value, H5T_cset_t cset)
{
    const char *v[1] = {value};
    return write_str_attr(obj, name, v, -1, cset);
}

/* Keras writes np.asarray([]) -- an empty float64 array -- as `weight_names` of a weightless layer. */
static int write_empty_names(hid_t obj)
{
    hsize_t dim = 0;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t a = sp >= 0 ? H5Acreate2(obj, "weight_names", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0;
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    return ok ? 0 : -1;
}

/* Contiguous little-endian float32 dataset `name` in `loc` with the weight's Keras shape. */
static int write_dataset(hid_t loc, const char *name, const vxm_h5_out_weight *w)
{
    hsize_t dims[5];
    for (int d = 0; d < w->rank; d++)
        dims[d] = (hsize_t)w->dims[d];
    hid_t sp = H5Screate_simple(w->rank, dims, NULL);
    /* no modification times in the object headers: the same weights give the same bytes (reproducible
     * checkpoints that `cmp` can compare) */
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int ok = dcpl >= 0 && H5Pset_obj_track_times(dcpl, 0) >= 0;
    hid_t ds = ok && sp >= 0 ? H5Dcreate2(loc, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    ok = ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->data) >= 0;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (ds >= 0)
        H5Dclose(ds);
    if (sp >= 0)
        H5Sclose(sp);
    return ok ? 0 : -1;
}

/* Opens `name` in `loc`, creating the group when it does not exist yet. */
static hid_t open_or_create_group(hid_t loc, const char *name)
{
    if (H5Lexists(loc, name, H5P_DEFAULT) > 0)
        return H5Gopen2(loc, name, H5P_DEFAULT);
    return H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

/* ---- temporary file: create next to `path`, rename into place only when complete ----------------------- */

typedef struct h5_out {
    char *tmp;
    hid_t file;
    H5E_auto2_t old_func; /* HDF5's automatic error printing is library state: restored in h5_out_finish */
    void *old_data;
} h5_out;

static vxm_status h5_out_open(vxm_context *ctx, const char *path, h5_out *o)
{
    o->tmp = NULL;
    o->file = -1;
    if (!path || !*path)
        return vxm_error(ctx, VXM_EINVAL, "output", "empty file name");
    int fd;
    vxm_status st = vxm_temp_create(ctx, path, &o->tmp, &fd);
    if (st)
        return st;
    close(fd); /* HDF5 reopens the (exclusively created, empty) file by name */
    H5Eget_auto2(H5E_DEFAULT, &o->old_func, &o->old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our caller reports one line, not HDF5's error stack */
    o->file = H5Fcreate(o->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (o->file < 0) {
        H5Eset_auto2(H5E_DEFAULT, o->old_func, o->old_data);
        unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
        return vxm_error(ctx, VXM_EIO, path, "cannot create an HDF5 file in its directory");
    }
    return VXM_OK;
}

/* Closes the file (which flushes it), renames it into place when `st` is VXM_OK, removes it otherwise. */
static vxm_status h5_out_finish(vxm_context *ctx, const char *path, h5_out *o, vxm_status st)
{
    /* flush explicitly: H5Fclose only closes the file once no object in it is open any more */
    if ((H5Fflush(o->file, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(o->file) < 0) && st == VXM_OK)
        st = vxm_error(ctx, VXM_EIO, path, "cannot write the HDF5 file (disk full?)");
    H5Eset_auto2(H5E_DEFAULT, o->old_func, o->old_data);
    st = vxm_temp_commit(ctx, o->tmp, path, st);
    free(o->tmp);
    o->tmp = NULL;
    return st;
}

/* ---- model file ----------------------------------------------------------------------------------------- */

/* One layer group: weight_names in the order the layer's weights appear in `w`, then the datasets under the
 * inner group <layer> (Keras creates it implicitly from the '/' in "<layer>/kernel:0").  *used counts the
 * weights written. */
static vxm_status write_layer(vxm_context *ctx, const char *path, hid_t mw, const char *layer,
                              const vxm_h5_out_weight *w, int nweights, int *used)
{
    int n = 0;
    for (int i = 0; i < nweights; i++)
        n += strcmp(w[i].layer, layer) == 0;
    hid_t g = H5Gcreate2(mw, layer, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return vxm_error(ctx, VXM_EIO, path, "cannot create layer group %s", layer);
    if (n == 0) {
        int rc = write_empty_names(g);
        H5Gclose(g);
        return rc ? vxm_error(ctx, VXM_EIO, path, "cannot write weight_names of %s", layer) : VXM_OK;
    }
    vxm_status st = VXM_OK;
    char **names = calloc((size_t)n, sizeof *names);
    hid_t inner = H5Gcreate2(g, layer, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (!names || inner < 0) {
        st = vxm_error(ctx, names ? VXM_EIO : VXM_ENOMEM, path, "cannot create the weights of %s", layer);
        goto done;
    }
    for (int i = 0, k = 0; i < nweights && st == VXM_OK; i++) {
        if (strcmp(w[i].layer, layer) != 0)
            continue;
        size_t len = strlen(layer) + strlen(w[i].kind) + 4;
        names[k] = malloc(len);
        if (!names[k]) {
            st = vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
            break;
        }
        snprintf(names[k], len, "%s/%s:0", layer, w[i].kind);
        if (write_dataset(inner, strchr(names[k], '/') + 1, &w[i]))
            st = vxm_error(ctx, VXM_EIO, path, "cannot write weight %s", names[k]);
        k++;
        (*used)++;
    }
    if (st == VXM_OK && write_str_attr(g, "weight_names", (const char *const *)names, n, H5T_CSET_ASCII))
        st = vxm_error(ctx, VXM_EIO, path, "cannot write weight_names of %s", layer);
done:
    if (names)
        for (int k = 0; k < n; k++)
            free(names[k]);
    free(names);
    if (inner >= 0)
        H5Gclose(inner);
    H5Gclose(g);
    return st;
}

static vxm_status write_model_weights(vxm_context *ctx, const char *path, hid_t file,
                                      const char *const *layer_names, int nlayers, const vxm_h5_out_weight *w,
                                      int nweights)
{
    hid_t mw = H5Gcreate2(file, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (mw < 0)
        return vxm_error(ctx, VXM_EIO, path, "cannot create /model_weights");
    vxm_status st = VXM_OK;
    if (write_str_attr(mw, "layer_names", layer_names, nlayers, H5T_CSET_ASCII) ||
        write_scalar_str_attr(mw, "backend", KERAS_BACKEND, H5T_CSET_ASCII) ||
        write_scalar_str_attr(mw, "keras_version", KERAS_VERSION, H5T_CSET_ASCII))
        st = vxm_error(ctx, VXM_EIO, path, "cannot write the attributes of /model_weights");
    int used = 0;
    for (int i = 0; i < nlayers && st == VXM_OK; i++)
        st = write_layer(ctx, path, mw, layer_names[i], w, nweights, &used);
    if (st == VXM_OK) {
        hid_t top = H5Gcreate2(mw, TOP_LEVEL_GROUP, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (top < 0 || write_empty_names(top))
            st = vxm_error(ctx, VXM_EIO, path, "cannot write /model_weights/" TOP_LEVEL_GROUP);
        if (top >= 0)
            H5Gclose(top);
    }
    H5Gclose(mw);
    return st;
}

static int write_num_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp >= 0 ? H5Acreate2(obj, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, mem_type, v) >= 0;
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    return ok ? 0 : -1;
}

/* The state group: attributes, then <set>/<layer>/<kind> datasets. */
static vxm_status write_state(vxm_context *ctx, const char *path, hid_t file, const vxm_h5_out_state *s)
{
    vxm_status st = VXM_OK;
    if ((st = check_name(ctx, path, "group", s->group)))
        return st;
    for (int k = 0; k < s->nsets; k++)
        if ((st = check_name(ctx, path, "set", s->set_name[k])) ||
            (st = check_weights(ctx, path, s->set[k], s->nweights)))
            return st;
    hid_t g = H5Gcreate2(file, s->group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return vxm_error(ctx, VXM_EIO, path, "cannot create /%s", s->group);
    int bad = 0;
    for (int k = 0; k < s->nstr && !bad; k++)
        bad = write_scalar_str_attr(g, s->str_name[k], s->str_value[k], H5T_CSET_ASCII);
    for (int k = 0; k < s->nint && !bad; k++)
        bad = write_num_attr(g, s->int_name[k], H5T_STD_I64LE, H5T_NATIVE_LLONG, &s->int_value[k]);
    for (int k = 0; k < s->ndbl && !bad; k++)
        bad = write_num_attr(g, s->dbl_name[k], H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &s->dbl_value[k]);
    if (bad)
        st = vxm_error(ctx, VXM_EIO, path, "cannot write the attributes of /%s", s->group);
    for (int k = 0; k < s->nsets && !st; k++) {
        hid_t sg = H5Gcreate2(g, s->set_name[k], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        for (int i = 0; i < s->nweights && !st; i++) {
            const vxm_h5_out_weight *w = &s->set[k][i];
            hid_t lg = sg >= 0 ? open_or_create_group(sg, w->layer) : -1;
            if (lg < 0 || write_dataset(lg, w->kind, w))
                st = vxm_error(ctx, VXM_EIO, path, "cannot write /%s/%s/%s/%s", s->group, s->set_name[k],
                               w->layer, w->kind);
            if (lg >= 0)
                H5Gclose(lg);
        }
        if (sg >= 0)
            H5Gclose(sg);
        else if (!st)
            st = vxm_error(ctx, VXM_EIO, path, "cannot create /%s/%s", s->group, s->set_name[k]);
    }
    H5Gclose(g);
    return st;
}

vxm_status vxm_h5_write_model(vxm_context *ctx, const char *path, const char *model_config_json,
                              const char *const *layer_names, int nlayers, const vxm_h5_out_weight *w,
                              int nweights)
{
    return vxm_h5_write_model_state(ctx, path, model_config_json, layer_names, nlayers, w, nweights, NULL);
}

vxm_status vxm_h5_write_model_state(vxm_context *ctx, const char *path, const char *model_config_json,
                                    const char *const *layer_names, int nlayers, const vxm_h5_out_weight *w,
                                    int nweights, const vxm_h5_out_state *state)
{
    vxm_status st;
    if (!model_config_json || nlayers < 0 || (nlayers > 0 && !layer_names))
        return vxm_error(ctx, VXM_EINVAL, path, "write model: missing model_config or layer names");
    if ((st = check_weights(ctx, path, w, nweights)))
        return st;
    for (int i = 0; i < nlayers; i++) {
        if ((st = check_name(ctx, path, "layer", layer_names[i])))
            return st;
        if (strcmp(layer_names[i], TOP_LEVEL_GROUP) == 0)
            return vxm_error(ctx, VXM_EINVAL, path, "layer name %s is reserved by Keras", TOP_LEVEL_GROUP);
        for (int k = 0; k < i; k++)
            if (strcmp(layer_names[k], layer_names[i]) == 0)
                return vxm_error(ctx, VXM_EINVAL, path, "layer %s listed twice", layer_names[i]);
    }
    for (int i = 0; i < nweights; i++) {
        int found = 0;
        for (int k = 0; k < nlayers && !found; k++)
            found = strcmp(layer_names[k], w[i].layer) == 0;
        if (!found)
            return vxm_error(ctx, VXM_EINVAL, path, "weight %s/%s: layer not in layer_names", w[i].layer,
                             w[i].kind);
    }

    h5_out o;
    if ((st = h5_out_open(ctx, path, &o)))
        return st;
    if (write_scalar_str_attr(o.file, "model_config", model_config_json, H5T_CSET_ASCII) ||
        write_scalar_str_attr(o.file, "keras_version", KERAS_VERSION, H5T_CSET_UTF8) ||
        write_scalar_str_attr(o.file, "backend", KERAS_BACKEND, H5T_CSET_UTF8))
        st = vxm_error(ctx, VXM_EIO, path, "cannot write the root attributes");
    if (st == VXM_OK)
        st = write_model_weights(ctx, path, o.file, layer_names, nlayers, w, nweights);
    if (st == VXM_OK && state)
        st = write_state(ctx, path, o.file, state);
    return h5_out_finish(ctx, path, &o, st);
}

/* ---- gradient file (layout of data/train/C_grads.h5) ----------------------------------------------------- */

vxm_status vxm_h5_write_gradients(vxm_context *ctx, const char *path, const vxm_h5_out_weight *w, int nweights)
{
    vxm_status st = check_weights(ctx, path, w, nweights);
    if (st)
        return st;
    h5_out o;
    if ((st = h5_out_open(ctx, path, &o)))
        return st;
    for (int i = 0; i < nweights && st == VXM_OK; i++) {
        hid_t g = open_or_create_group(o.file, w[i].layer);
        if (g < 0 || write_dataset(g, w[i].kind, &w[i]))
            st = vxm_error(ctx, VXM_EIO, path, "cannot write gradient %s/%s", w[i].layer, w[i].kind);
        if (g >= 0)
            H5Gclose(g);
    }
    return h5_out_finish(ctx, path, &o, st);
}
