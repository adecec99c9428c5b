/* Keras 2 HDF5 reader (spec §3.6).  Dataset paths come from `weight_names`, never from the layer name; name
 * strings are NULL-padded fixed-length (or variable-length) strings; attributes too large for an object
 * header are split by Keras into `<name>0`, `<name>1`, ... */
#include "io/io.h"
#include "model/keras_h5.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct strlist {
    int n;
    char **s;
} strlist;

static void strlist_free(strlist *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->s[i]);
    free(l->s);
    l->n = 0;
    l->s = NULL;
}

static char *dup_n(const char *s, size_t n)
{
    size_t len = 0;
    while (len < n && s[len])
        len++;
    char *r = malloc(len + 1);
    if (r) {
        memcpy(r, s, len);
        r[len] = '\0';
    }
    return r;
}

/* Attribute values are stored uncompressed in the file (object headers or dense storage), so a value larger than
 * the file is a corrupt size field, refused before anything is allocated for it (issue 11). */
static int fits_in_file(hid_t obj, double bytes)
{
    hid_t fid = H5Iget_file_id(obj);
    hsize_t size = 0;
    int ok = fid >= 0 && H5Fget_filesize(fid, &size) >= 0 && bytes <= (double)size;
    if (fid >= 0)
        H5Fclose(fid);
    return ok;
}

/* Reads a scalar string attribute (variable- or fixed-length).  Returns NULL when absent or not a string. */
static char *read_string_attr(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0)
        return NULL;
    char *result = NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return NULL;
    hid_t ft = H5Aget_type(a);
    if (ft >= 0 && H5Tget_class(ft) == H5T_STRING) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        if (H5Tis_variable_str(ft) > 0) {
            char *s = NULL;
            H5Tset_size(mt, H5T_VARIABLE);
            if (H5Aread(a, mt, &s) >= 0 && s) {
                result = strdup(s);
                H5free_memory(s);
            }
        } else {
            size_t sz = H5Tget_size(ft);
            char *buf = sz > 0 && fits_in_file(obj, (double)sz) ? calloc(sz + 1, 1) : NULL;
            H5Tset_size(mt, sz);
            H5Tset_strpad(mt, H5T_STR_NULLPAD); /* NULLTERM would cut the last character of a full-length name */
            if (buf && H5Aread(a, mt, buf) >= 0)
                result = dup_n(buf, sz);
            free(buf);
        }
        H5Tclose(mt);
    }
    if (ft >= 0)
        H5Tclose(ft);
    H5Aclose(a);
    return result;
}

/* Appends the entries of a 1-D string-array attribute to `out`.  A non-string attribute (Keras writes an
 * empty float64 array for weightless layers) contributes nothing.  Returns 0 on success. */
static int append_string_array_attr(hid_t obj, const char *name, strlist *out)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    int rc = 0;
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    size_t esz = H5Tget_size(ft);
    if (n > 0 && (esz == 0 || !fits_in_file(obj, (double)n * (H5Tis_variable_str(ft) > 0 ? 1.0 : (double)esz)))) {
        rc = -1; /* a corrupt count or string size */
        goto done;
    }
    if (H5Tget_class(ft) == H5T_STRING && n > 0) {
        char **grown = realloc(out->s, sizeof(char *) * (size_t)(out->n + n));
        if (!grown) {
            rc = -1;
            goto done;
        }
        out->s = grown;
        hid_t mt = H5Tcopy(H5T_C_S1);
        if (H5Tis_variable_str(ft) > 0) {
            char **v = calloc((size_t)n, sizeof(char *));
            H5Tset_size(mt, H5T_VARIABLE);
            if (v && H5Aread(a, mt, v) >= 0) {
                for (hssize_t i = 0; i < n; i++)
                    out->s[out->n++] = strdup(v[i] ? v[i] : "");
                H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, v);
            } else {
                rc = -1;
            }
            free(v);
        } else {
            size_t sz = H5Tget_size(ft);
            char *buf = calloc((size_t)n, sz);
            H5Tset_size(mt, sz);
            H5Tset_strpad(mt, H5T_STR_NULLPAD); /* NULLTERM would cut the last character of a full-length name */
            if (buf && H5Aread(a, mt, buf) >= 0) {
                for (hssize_t i = 0; i < n; i++)
                    out->s[out->n++] = dup_n(buf + (size_t)i * sz, sz);
            } else {
                rc = -1;
            }
            free(buf);
        }
        H5Tclose(mt);
    }
done:
    H5Sclose(sp);
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

static int read_string_list(hid_t obj, const char *name, strlist *out)
{
    if (H5Aexists(obj, name) > 0)
        return append_string_array_attr(obj, name, out);
    char chunk[300];
    for (int k = 0;; k++) {
        snprintf(chunk, sizeof chunk, "%s%d", name, k);
        if (H5Aexists(obj, chunk) <= 0)
            return k > 0 ? 0 : -1;
        if (append_string_array_attr(obj, chunk, out))
            return -1;
    }
}

/* A corrupt shape must not become a huge allocation (issue 11): a weight may not exceed the allocation ceiling
 * (VXM_MAX_ALLOC_MB, else the machine's memory), and an unfiltered dataset must hold the bytes its shape needs
 * (compressed ones are bounded by the ceiling alone). */
static vxm_status check_weight_size(vxm_context *ctx, const char *path, const char *dpath, hid_t d, size_t numel)
{
    double need = (double)numel * sizeof(float);
    if (need > vxm_io_alloc_ceiling())
        return vxm_error(ctx, VXM_EFORMAT, path, "weight %s needs %.3g GB: a corrupt file?", dpath, need / 1e9);
    hid_t ft = H5Dget_type(d), dcpl = H5Dget_create_plist(d);
    int cls = ft >= 0 ? (int)H5Tget_class(ft) : -1;
    size_t esz = ft >= 0 ? H5Tget_size(ft) : 0;
    int filters = dcpl >= 0 ? H5Pget_nfilters(dcpl) : -1;
    hsize_t stored = H5Dget_storage_size(d);
    if (ft >= 0)
        H5Tclose(ft);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (cls != H5T_FLOAT && cls != H5T_INTEGER)
        return vxm_error(ctx, VXM_EFORMAT, path, "weight %s is not numeric", dpath);
    if (filters == 0 && (double)stored < (double)numel * (double)esz)
        return vxm_error(ctx, VXM_EFORMAT, path, "weight %s holds %llu bytes, its shape needs %.0f (truncated file?)",
                         dpath, (unsigned long long)stored, (double)numel * (double)esz);
    return VXM_OK;
}

static vxm_status read_weight(vxm_context *ctx, const char *path, hid_t file, const char *layer,
                              const char *wname, vxm_h5_weight *w)
{
    char dpath[1024];
    snprintf(dpath, sizeof dpath, "/model_weights/%s/%s", layer, wname);
    w->name = strdup(wname);
    hid_t d = H5Dopen2(file, dpath, H5P_DEFAULT);
    if (d < 0)
        return vxm_error(ctx, VXM_EFORMAT, path, "weight dataset %s is missing", dpath);
    vxm_status st = VXM_OK;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[8];
    int rank = H5Sget_simple_extent_ndims(sp);
    if (rank < 1 || rank > 8 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "weight %s has unsupported rank %d", dpath, rank);
        goto done;
    }
    w->rank = rank;
    w->numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] > (hsize_t)LONG_MAX || (dims[i] && w->numel > SIZE_MAX / sizeof(float) / dims[i])) {
            st = vxm_error(ctx, VXM_EFORMAT, path, "weight %s has an invalid shape", dpath);
            goto done;
        }
        w->dims[i] = (long)dims[i];
        w->numel *= dims[i];
    }
    if ((st = check_weight_size(ctx, path, dpath, d, w->numel)))
        goto done;
    w->data = malloc(w->numel * sizeof(float) + 1);
    if (!w->data) {
        st = vxm_error(ctx, VXM_ENOMEM, path, "cannot allocate weight %s", dpath);
        goto done;
    }
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->data) < 0)
        st = vxm_error(ctx, VXM_EFORMAT, path, "cannot read weight %s (truncated file?)", dpath);
done:
    H5Sclose(sp);
    H5Dclose(d);
    return st;
}

static vxm_status read_layers(vxm_context *ctx, const char *path, hid_t file, vxm_keras_file *f)
{
    hid_t g = H5Gopen2(file, "/model_weights", H5P_DEFAULT);
    if (g < 0)
        return vxm_error(ctx, VXM_EFORMAT, path, "not a Keras model: no /model_weights group");
    strlist names = {0, NULL};
    vxm_status st = VXM_OK;
    if (read_string_list(g, "layer_names", &names)) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "not a Keras model: /model_weights has no layer_names");
        goto done;
    }
    f->layers = calloc((size_t)names.n + 1, sizeof(vxm_h5_layer));
    if (!f->layers) {
        st = vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
        goto done;
    }
    for (int i = 0; i < names.n && st == VXM_OK; i++) {
        vxm_h5_layer *L = &f->layers[f->nlayers++];
        L->name = strdup(names.s[i]);
        hid_t lg = H5Gopen2(g, names.s[i], H5P_DEFAULT);
        if (lg < 0) {
            st = vxm_error(ctx, VXM_EFORMAT, path, "layer group %s is missing", names.s[i]);
            break;
        }
        strlist wn = {0, NULL};
        if (read_string_list(lg, "weight_names", &wn) == 0 && wn.n > 0) {
            L->weights = calloc((size_t)wn.n, sizeof(vxm_h5_weight));
            if (!L->weights)
                st = vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
            for (int k = 0; k < wn.n && st == VXM_OK; k++) {
                L->nweights++;
                st = read_weight(ctx, path, file, names.s[i], wn.s[k], &L->weights[k]);
            }
        }
        strlist_free(&wn);
        H5Gclose(lg);
    }
done:
    strlist_free(&names);
    H5Gclose(g);
    return st;
}

vxm_status vxm_keras_file_read(vxm_context *ctx, const char *path, vxm_keras_file **out)
{
    *out = NULL;
    struct stat stb;
    /* a missing file or a folder is reported by the direct read without a child */
    if (stat(path, &stb) == 0 && !S_ISDIR(stb.st_mode)) {
        vxm_status st = vxm_keras_file_check_isolated(ctx, path);
        if (st)
            return st;
    }
    return vxm_keras_file_read_direct(ctx, path, out);
}

vxm_status vxm_keras_file_read_direct(vxm_context *ctx, const char *path, vxm_keras_file **out)
{
    *out = NULL;
    struct stat stb;
    if (stat(path, &stb) != 0)
        return vxm_error(ctx, VXM_EIO, path, "%s", strerror(errno));
    if (S_ISDIR(stb.st_mode))
        return vxm_error(ctx, VXM_EIO, path, "is a directory");

    /* HDF5 prints its error stack to stderr by default; our caller reports one line instead.  The automatic
     * handler is library state, so it is restored before returning. */
    H5E_auto2_t old_func;
    void *old_data;
    H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

    vxm_status st = VXM_OK;
    hid_t file = -1;
    vxm_keras_file *f = calloc(1, sizeof *f);
    if (!f) {
        st = vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
        goto done;
    }
    if (H5Fis_hdf5(path) <= 0) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "not an HDF5 file (expected a Keras .h5 model)");
        goto done;
    }
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "cannot open HDF5 file (truncated or corrupt?)");
        goto done;
    }
    f->model_config = read_string_attr(file, "model_config");
    f->keras_version = read_string_attr(file, "keras_version");
    if (!f->model_config) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "not a Keras model: no model_config attribute");
        goto done;
    }
    st = read_layers(ctx, path, file, f);
done:
    if (file >= 0)
        H5Fclose(file);
    H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
    if (st != VXM_OK) {
        vxm_keras_file_free(f);
        return st;
    }
    *out = f;
    return VXM_OK;
}

void vxm_keras_file_free(vxm_keras_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->nlayers; i++) {
        vxm_h5_layer *L = &f->layers[i];
        for (int k = 0; k < L->nweights; k++) {
            free(L->weights[k].name);
            free(L->weights[k].data);
        }
        free(L->weights);
        free(L->name);
    }
    free(f->layers);
    free(f->model_config);
    free(f->keras_version);
    free(f);
}

const vxm_h5_layer *vxm_keras_find_layer(const vxm_keras_file *f, const char *name)
{
    for (int i = 0; i < f->nlayers; i++)
        if (strcmp(f->layers[i].name, name) == 0)
            return &f->layers[i];
    return NULL;
}

/* ---- extra state groups ------------------------------------------------------------------------------- */
struct vxm_h5_state {
    vxm_context *ctx;
    char *path, *group;
    hid_t file, g;
    H5E_auto2_t old_func; /* HDF5's automatic error printing, restored on close */
    void *old_data;
};

void vxm_h5_state_close(vxm_h5_state *s)
{
    if (!s)
        return;
    if (s->g >= 0)
        H5Gclose(s->g);
    if (s->file >= 0)
        H5Fclose(s->file);
    H5Eset_auto2(H5E_DEFAULT, s->old_func, s->old_data);
    free(s->path);
    free(s->group);
    free(s);
}

vxm_status vxm_h5_state_open(vxm_context *ctx, const char *path, const char *group, vxm_h5_state **out)
{
    *out = NULL;
    vxm_h5_state *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path)) || !(s->group = strdup(group))) {
        if (s)
            free(s->path);
        free(s);
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
    }
    s->ctx = ctx;
    s->file = s->g = -1;
    H5Eget_auto2(H5E_DEFAULT, &s->old_func, &s->old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    vxm_status st = VXM_OK;
    struct stat stb;
    if (stat(path, &stb) != 0)
        st = vxm_error(ctx, VXM_EIO, path, "%s", strerror(errno));
    else if (H5Fis_hdf5(path) <= 0 || (s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        st = vxm_error(ctx, VXM_EFORMAT, path, "cannot open as an HDF5 file");
    else if (H5Lexists(s->file, group, H5P_DEFAULT) <= 0 || (s->g = H5Gopen2(s->file, group, H5P_DEFAULT)) < 0)
        st = vxm_error(ctx, VXM_EFORMAT, path, "has no /%s group", group);
    if (st) {
        vxm_h5_state_close(s);
        return st;
    }
    *out = s;
    return VXM_OK;
}

int vxm_h5_state_str(vxm_h5_state *s, const char *name, char *buf, size_t n)
{
    char *v = read_string_attr(s->g, name);
    if (!v)
        return 0;
    snprintf(buf, n, "%s", v);
    free(v);
    return 1;
}

/* A scalar numeric attribute converted by HDF5 to `mem_type`; 1 when read. */
static int read_num_attr(hid_t obj, const char *name, hid_t mem_type, void *v)
{
    if (H5Aexists(obj, name) <= 0)
        return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return 0;
    hid_t sp = H5Aget_space(a), ft = H5Aget_type(a);
    int cls = ft >= 0 ? (int)H5Tget_class(ft) : -1;
    int ok = H5Sget_simple_extent_npoints(sp) == 1 && (cls == H5T_INTEGER || cls == H5T_FLOAT) &&
             H5Aread(a, mem_type, v) >= 0;
    if (ft >= 0)
        H5Tclose(ft);
    if (sp >= 0)
        H5Sclose(sp);
    H5Aclose(a);
    return ok;
}

int vxm_h5_state_int(vxm_h5_state *s, const char *name, long long *v)
{
    return read_num_attr(s->g, name, H5T_NATIVE_LLONG, v);
}

int vxm_h5_state_double(vxm_h5_state *s, const char *name, double *v)
{
    return read_num_attr(s->g, name, H5T_NATIVE_DOUBLE, v);
}

vxm_status vxm_h5_state_read(vxm_h5_state *s, const char *set, const char *layer, const char *kind, int rank,
                             const long *dims, float *data)
{
    char dpath[1024];
    snprintf(dpath, sizeof dpath, "%s/%s/%s", set, layer, kind);
    hid_t d = H5Lexists(s->g, set, H5P_DEFAULT) > 0 ? H5Dopen2(s->g, dpath, H5P_DEFAULT) : -1;
    if (d < 0)
        return vxm_error(s->ctx, VXM_EFORMAT, s->path, "/%s/%s is missing", s->group, dpath);
    vxm_status st = VXM_OK;
    hid_t sp = H5Dget_space(d);
    hsize_t got[8];
    int r = H5Sget_simple_extent_ndims(sp);
    int same = r == rank && r >= 1 && r <= 8 && H5Sget_simple_extent_dims(sp, got, NULL) >= 0;
    for (int i = 0; same && i < r; i++)
        same = (long)got[i] == dims[i];
    if (!same) {
        char want[96] = "", have[96] = "";
        for (int i = 0; i < rank; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%ld", i ? "," : "", dims[i]);
        for (int i = 0; i < r && i < 8 && H5Sget_simple_extent_dims(sp, got, NULL) >= 0; i++)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%ld", i ? "," : "", (long)got[i]);
        st = vxm_error(s->ctx, VXM_ESHAPE, s->path, "/%s/%s has shape (%s), the model's weight (%s)", s->group,
                       dpath, have, want);
    } else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        st = vxm_error(s->ctx, VXM_EFORMAT, s->path, "cannot read /%s/%s (truncated file?)", s->group, dpath);
    }
    H5Sclose(sp);
    H5Dclose(d);
    return st;
}
