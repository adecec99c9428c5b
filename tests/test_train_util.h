/* Shared by the training golden tests: reading gradient files and Keras weights, relative L2 differences. */
#ifndef VXM_TEST_TRAIN_UTIL_H
#define VXM_TEST_TRAIN_UTIL_H

#include <hdf5.h>
#include <math.h>
#include <string.h>

#include "model/keras_h5.h"

/* Dataset /<layer>/<kind> of a gradient file (numel floats). */
static inline int read_grad(hid_t f, const char *layer, const char *kind, float *out, size_t numel)
{
    char path[256];
    snprintf(path, sizeof path, "/%s/%s", layer, kind);
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0)
        return -1;
    hid_t sp = H5Dget_space(d);
    hssize_t cnt = H5Sget_simple_extent_npoints(sp);
    int r = cnt == (hssize_t)numel ? H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) : -1;
    H5Sclose(sp);
    H5Dclose(d);
    return r < 0 ? -1 : 0;
}

static inline double rel_l2(const float *a, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline const float *file_weight(const vxm_keras_file *f, const char *layer, const char *kind, size_t numel)
{
    const vxm_h5_layer *L = vxm_keras_find_layer(f, layer);
    for (int i = 0; L && i < L->nweights; i++) {
        const char *slash = strrchr(L->weights[i].name, '/');
        const char *nm = slash ? slash + 1 : L->weights[i].name;
        if (!strncmp(nm, kind, strlen(kind)) && L->weights[i].numel == numel)
            return L->weights[i].data;
    }
    return NULL;
}

#endif
