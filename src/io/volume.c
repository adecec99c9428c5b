/* Host volumes: allocation, geometry records, and the read/write entry points (dispatch by file extension;
 * writes go to a temporary file in the target directory that is renamed over the target only once it is
 * complete, so a failed write never leaves a partial or truncated output behind). */
#include "core/tempfile.h"
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- volumes --------------------------------------------------------------------------------------- */
vxm_volume *vxm_volume_new(int ndim, const int shape[3], int channels)
{
    if ((ndim != 2 && ndim != 3) || !shape || channels < 1)
        return NULL;
    if (shape[0] < 1 || shape[1] < 1 || shape[2] < 1 || (ndim == 2 && shape[0] != 1))
        return NULL;
    size_t n = (size_t)channels;
    for (int d = 0; d < 3; d++) {
        if (n > SIZE_MAX / sizeof(float) / (size_t)shape[d])
            return NULL;
        n *= (size_t)shape[d];
    }
    vxm_volume *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->data = calloc(n, sizeof(float));
    if (!v->data) {
        free(v);
        return NULL;
    }
    v->ndim = ndim;
    memcpy(v->shape, shape, sizeof v->shape);
    v->channels = channels;
    v->geom = NULL;
    return v;
}

void vxm_volume_free(vxm_volume *v)
{
    if (!v)
        return;
    vxm_geometry_free(v->geom);
    free(v->data);
    free(v);
}

size_t vxm_volume_numel(const vxm_volume *v)
{
    if (!v)
        return 0;
    return (size_t)v->shape[0] * (size_t)v->shape[1] * (size_t)v->shape[2] * (size_t)v->channels;
}

int vxm_volume_as_2d_channels(vxm_volume *v)
{
    if (!v || v->ndim != 3 || v->channels != 1 || v->shape[2] > 3)
        return 0;
    int h = v->shape[0], w = v->shape[1], c = v->shape[2];
    v->ndim = 2;
    v->shape[0] = 1;
    v->shape[1] = h;
    v->shape[2] = w;
    v->channels = c;
    return 1;
}

/* ---- geometry -------------------------------------------------------------------------------------- */
vxm_geometry *vxm_geometry_clone(const vxm_geometry *g)
{
    if (!g)
        return NULL;
    vxm_geometry *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    *c = *g;
    if (g->nim) {
        c->nim = nifti_copy_nim_info(g->nim);
        if (!c->nim) {
            free(c);
            return NULL;
        }
    }
    return c;
}

void vxm_geometry_free(vxm_geometry *g)
{
    if (!g)
        return;
    if (g->nim)
        nifti_image_free(g->nim);
    free(g);
}

void vxm_geometry_affine(const vxm_geometry *g, const vxm_volume *v, double a[4][4])
{
    if (g) {
        memcpy(a, g->affine, sizeof g->affine);
        return;
    }
    /* VoxelMorph's default (save_volfile): LIA-like rotation, centred on the volume. */
    static const double R[3][3] = {{-1, 0, 0}, {0, 0, 1}, {0, -1, 0}};
    size_t d[3] = {1, 1, 1};
    if (v)
        vxm_io_disk_dims(v, d);
    memset(a, 0, 16 * sizeof(double));
    for (int r = 0; r < 3; r++) {
        double t = 0;
        for (int c = 0; c < 3; c++) {
            a[r][c] = R[r][c];
            t += R[r][c] * ((double)d[c] / 2.0);
        }
        a[r][3] = -t + 0.0; /* + 0.0: no negative zeros */
    }
    a[3][3] = 1;
}

/* ---- dispatch ------------------------------------------------------------------------------------ */
typedef enum { FMT_NONE, FMT_NII, FMT_NIIGZ, FMT_MGH, FMT_MGZ, FMT_NPY, FMT_NPZ } file_format;

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcasecmp(s + n - m, suffix) == 0;
}

static file_format format_of(const char *path)
{
    if (ends_with(path, ".nii.gz"))
        return FMT_NIIGZ;
    if (ends_with(path, ".nii"))
        return FMT_NII;
    if (ends_with(path, ".mgz") || ends_with(path, ".mgh.gz"))
        return FMT_MGZ;
    if (ends_with(path, ".mgh"))
        return FMT_MGH;
    if (ends_with(path, ".npz"))
        return FMT_NPZ;
    if (ends_with(path, ".npy"))
        return FMT_NPY;
    return FMT_NONE;
}

#define KNOWN_EXTENSIONS ".nii, .nii.gz, .mgz, .mgh, .npz or .npy"

vxm_status vxm_volume_read(vxm_context *ctx, const char *path, const char *key, vxm_volume **out)
{
    if (!out)
        return vxm_error(ctx, VXM_EINVAL, path, "no output volume given");
    *out = NULL;
    if (!path || !*path)
        return vxm_error(ctx, VXM_EINVAL, "vxm_volume_read", "empty file name");
    struct stat st;
    if (stat(path, &st) != 0)
        return vxm_error(ctx, VXM_EIO, path, "%s", strerror(errno));
    if (S_ISDIR(st.st_mode))
        return vxm_error(ctx, VXM_EIO, path, "%s", strerror(EISDIR));
    switch (format_of(path)) {
    case FMT_NII:
    case FMT_NIIGZ: return vxm_nifti_read(ctx, path, out);
    case FMT_MGH:
    case FMT_MGZ: return vxm_mgh_read(ctx, path, out);
    case FMT_NPY: return vxm_npy_read(ctx, path, out);
    case FMT_NPZ: return vxm_npz_read(ctx, path, key, out);
    case FMT_NONE: break;
    }
    return vxm_error(ctx, VXM_EFORMAT, path, "unknown file extension (expected " KNOWN_EXTENSIONS ")");
}

static vxm_status check_volume(vxm_context *ctx, const char *path, const vxm_volume *v)
{
    if (!v || !v->data)
        return vxm_error(ctx, VXM_EINVAL, path, "no volume to write");
    if ((v->ndim != 2 && v->ndim != 3) || v->channels < 1 || v->shape[0] < 1 || v->shape[1] < 1 ||
        v->shape[2] < 1 || (v->ndim == 2 && v->shape[0] != 1))
        return vxm_error(ctx, VXM_EINVAL, path, "invalid volume shape (ndim %d, %d x %d x %d, %d channels)",
                         v->ndim, v->shape[0], v->shape[1], v->shape[2], v->channels);
    return VXM_OK;
}

vxm_status vxm_volume_write(vxm_context *ctx, const char *path, const vxm_volume *vol, const vxm_volume *like)
{
    if (!path || !*path)
        return vxm_error(ctx, VXM_EINVAL, "vxm_volume_write", "empty file name");
    vxm_status st = check_volume(ctx, path, vol);
    if (st)
        return st;
    file_format f = format_of(path);
    if (f == FMT_NONE)
        return vxm_error(ctx, VXM_EFORMAT, path, "unknown file extension (expected " KNOWN_EXTENSIONS ")");
    const vxm_geometry *g = like ? like->geom : vol->geom;

    char *tmp = NULL;
    int fd = -1;
    if ((st = vxm_temp_create(ctx, path, &tmp, &fd)))
        return st;
    switch (f) {
    case FMT_NII: st = vxm_nifti_write(ctx, path, fd, 0, vol, g); break;
    case FMT_NIIGZ: st = vxm_nifti_write(ctx, path, fd, 1, vol, g); break;
    case FMT_MGH: st = vxm_mgh_write(ctx, path, fd, 0, vol, g); break;
    case FMT_MGZ: st = vxm_mgh_write(ctx, path, fd, 1, vol, g); break;
    case FMT_NPY: st = vxm_npy_write(ctx, path, fd, vol); break;
    case FMT_NPZ: st = vxm_npz_write(ctx, path, fd, vol); break;
    case FMT_NONE: close(fd); st = VXM_EFORMAT; break;
    }
    if (!st && rename(tmp, path) != 0)
        st = vxm_error(ctx, VXM_EIO, path, "cannot rename the temporary file into place: %s", strerror(errno));
    if (st)
        unlink(tmp);
    free(tmp);
    return st;
}
