/* Tile table of the OpenCL backend (cl_tile.h): built-in defaults, the tuned file and the environment. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_opencl/cl_cache.h"
#include "backend_opencl/cl_tile.h"
#include "core/context.h"
#include "core/tempfile.h"

static const char *const kernel_keys[VXM_TILE_NKERNELS] = {"conv", "filter"};
static const char *const class_keys[VXM_TILE_NCLASSES] = {"cout16", "cout32", "wide"};
static const char *const env_names[VXM_TILE_NKERNELS] = {"VXM_OPENCL_CONV_TILE", "VXM_OPENCL_FILTER_TILE"};

int vxm_cl_tile_class(int cout)
{
    return cout <= 16 ? VXM_TILE_COUT16 : cout <= 32 ? VXM_TILE_COUT32 : VXM_TILE_COUT_WIDE;
}

const vxm_cl_tile *vxm_cl_tile_for(const vxm_cl *cl, int which, int cout)
{
    return &cl->tile[which][vxm_cl_tile_class(cout)];
}

int vxm_cl_tile_parse(const char *s, vxm_cl_tile *t)
{
    memset(t, 0, sizeof *t);
    if (strcmp(s, "direct") == 0)
        return 0;
    char end;
    if (sscanf(s, "%dx%dx%dx%dx%d%c", &t->tm, &t->tn, &t->tk, &t->rm, &t->rn, &end) != 5)
        return -1;
    if (t->tm < 1 || t->tn < 1 || t->tk < 1 || t->rm < 1 || t->rn < 1 || t->tm > 1024 || t->tn > 1024 ||
        t->tk > 1024 || t->rm > 16 || t->rn > 16) {
        memset(t, 0, sizeof *t);
        return -1;
    }
    return 0;
}

void vxm_cl_tile_format(const vxm_cl_tile *t, char *buf, size_t n)
{
    if (t->tm == 0)
        snprintf(buf, n, "direct");
    else
        snprintf(buf, n, "%dx%dx%dx%dx%d", t->tm, t->tn, t->tk, t->rm, t->rn);
}

int vxm_cl_tile_fits(const vxm_cl *cl, const vxm_cl_tile *t)
{
    if (t->tm == 0)
        return 1;
    if (t->tm % t->rm || t->tn % t->rn || t->rm * t->rn > 64)
        return 0;
    size_t wg = (size_t)(t->tm / t->rm) * (size_t)(t->tn / t->rn);
    size_t local = ((size_t)t->tk * (size_t)(t->tm + 1) + (size_t)t->tk * (size_t)(t->tn + 1)) * sizeof(float);
    return wg >= 1 && wg <= cl->max_wg && (cl->local_mem == 0 || local <= cl->local_mem);
}

/* Built-in table.  GPUs: a work-group computes 64-128 voxels x all output channels of a class, 256 threads at most,
 * 4x4 to 8x4 results per thread; measured defaults replace these once `vxm tune` runs on the device. */
static void builtin_tiles(vxm_backend *be)
{
    vxm_cl *cl = vxm_cl_of(be);
    memset(cl->tile, 0, sizeof cl->tile);
    if (!be->is_gpu)
        return; /* CPU devices: the direct kernels */
    static const vxm_cl_tile gpu[VXM_TILE_NKERNELS][VXM_TILE_NCLASSES] = {
        {{128, 16, 16, 8, 2}, {128, 32, 16, 8, 4}, {64, 64, 16, 4, 4}},
        {{64, 16, 32, 4, 2}, {64, 32, 32, 4, 4}, {64, 64, 32, 4, 4}},
    };
    for (int k = 0; k < VXM_TILE_NKERNELS; k++)
        for (int c = 0; c < VXM_TILE_NCLASSES; c++)
            cl->tile[k][c] = vxm_cl_tile_fits(cl, &gpu[k][c]) ? gpu[k][c] : (vxm_cl_tile){0, 0, 0, 0, 0};
}

char *vxm_cl_tune_path(const vxm_cl *cl, int create)
{
    const char *env = getenv("VXM_TUNE_FILE");
    if (env && strcmp(env, "0") == 0)
        return NULL;
    if (env && *env)
        return strdup(env);
    char *dir = vxm_cl_cache_dir_path(create);
    if (!dir)
        return NULL;
    char *info[3] = {vxm_cl_info_string(cl->platform, NULL, CL_PLATFORM_NAME),
                     vxm_cl_info_string(NULL, cl->device, CL_DEVICE_NAME),
                     vxm_cl_info_string(NULL, cl->device, CL_DRIVER_VERSION)};
    const char *fields[3] = {info[0], info[1], info[2]};
    uint64_t key = vxm_cl_cache_key(NULL, 0, fields, 3);
    for (int i = 0; i < 3; i++)
        free(info[i]);
    size_t n = strlen(dir) + 48;
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/tune-%016llx.json", dir, (unsigned long long)key);
    free(dir);
    return path;
}

/* Reads the tuned file into cl->tile (entries that parse and fit); 1 when a file was used. */
static int load_tuned(vxm_backend *be)
{
    vxm_cl *cl = vxm_cl_of(be);
    char *path = vxm_cl_tune_path(cl, 0);
    if (!path)
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        free(path);
        return 0;
    }
    char *text = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && len < (1 << 20) && fseek(f, 0, SEEK_SET) == 0 &&
        (text = malloc((size_t)len + 1)) != NULL && fread(text, 1, (size_t)len, f) == (size_t)len)
        text[len] = '\0';
    else {
        free(text);
        text = NULL;
    }
    fclose(f);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    cJSON *tiles = cJSON_GetObjectItemCaseSensitive(root, "tiles");
    int used = 0, bad = !cJSON_IsObject(tiles);
    for (int k = 0; k < VXM_TILE_NKERNELS && !bad; k++) {
        cJSON *kk = cJSON_GetObjectItemCaseSensitive(tiles, kernel_keys[k]);
        for (int c = 0; c < VXM_TILE_NCLASSES; c++) {
            cJSON *e = cJSON_GetObjectItemCaseSensitive(kk, class_keys[c]);
            vxm_cl_tile t;
            if (!e)
                continue;
            if (!cJSON_IsString(e) || vxm_cl_tile_parse(e->valuestring, &t) != 0) {
                bad = 1;
                break;
            }
            if (!vxm_cl_tile_fits(cl, &t)) {
                vxm_note(be->ctx, "warning: %s: tile %s does not fit this device; using the direct kernel", path,
                         e->valuestring);
                memset(&t, 0, sizeof t);
            }
            cl->tile[k][c] = t;
            used = 1;
        }
    }
    if (bad) {
        vxm_note(be->ctx, "warning: %s: ignoring a damaged tuned-tile file", path);
        builtin_tiles(be);
        used = 0;
    }
    cJSON_Delete(root);
    free(path);
    return used;
}

void vxm_cl_tiles_init(vxm_backend *be)
{
    vxm_cl *cl = vxm_cl_of(be);
    builtin_tiles(be);
    snprintf(cl->tile_source, sizeof cl->tile_source, "built-in");
    if (load_tuned(be))
        snprintf(cl->tile_source, sizeof cl->tile_source, "tuned");
    for (int k = 0; k < VXM_TILE_NKERNELS; k++) {
        const char *e = getenv(env_names[k]);
        vxm_cl_tile t;
        if (!e || !*e)
            continue;
        if (vxm_cl_tile_parse(e, &t) != 0) {
            vxm_note(be->ctx, "warning: %s=%s is not \"direct\" or TMxTNxTKxRMxRN; ignored", env_names[k], e);
            continue;
        }
        if (!vxm_cl_tile_fits(cl, &t)) {
            vxm_note(be->ctx, "warning: %s=%s does not fit %s; using the direct kernel", env_names[k], e, be->spec);
            memset(&t, 0, sizeof t);
        }
        for (int c = 0; c < VXM_TILE_NCLASSES; c++)
            cl->tile[k][c] = t;
        snprintf(cl->tile_source, sizeof cl->tile_source, "environment");
    }
}

vxm_status vxm_cl_tiles_save(vxm_backend *be, char *path_out, size_t n)
{
    vxm_cl *cl = vxm_cl_of(be);
    char *path = vxm_cl_tune_path(cl, 1);
    if (!path)
        return vxm_error(be->ctx, VXM_EIO, be->spec,
                         "no folder for the tuned tiles (set XDG_CACHE_HOME, HOME or VXM_TUNE_FILE)");
    cJSON *root = cJSON_CreateObject(), *tiles = cJSON_AddObjectToObject(root, "tiles");
    char *names[2] = {vxm_cl_info_string(cl->platform, NULL, CL_PLATFORM_NAME),
                      vxm_cl_info_string(NULL, cl->device, CL_DEVICE_NAME)};
    cJSON_AddStringToObject(root, "platform", names[0] ? names[0] : "?");
    cJSON_AddStringToObject(root, "device", names[1] ? names[1] : "?");
    free(names[0]);
    free(names[1]);
    for (int k = 0; k < VXM_TILE_NKERNELS && tiles; k++) {
        cJSON *kk = cJSON_AddObjectToObject(tiles, kernel_keys[k]);
        for (int c = 0; c < VXM_TILE_NCLASSES && kk; c++) {
            char buf[64];
            vxm_cl_tile_format(&cl->tile[k][c], buf, sizeof buf);
            cJSON_AddStringToObject(kk, class_keys[c], buf);
        }
    }
    char *text = tiles ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        free(path);
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of memory");
    }
    char *tmp = NULL;
    int fd = -1;
    vxm_status st = vxm_temp_create(be->ctx, path, &tmp, &fd);
    if (!st) {
        size_t len = strlen(text), off = 0;
        while (off < len) {
            ssize_t w = write(fd, text + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        int ok = off == len && write(fd, "\n", 1) == 1;
        ok = close(fd) == 0 && ok;
        if (!ok)
            st = vxm_error(be->ctx, VXM_EIO, path, "cannot write the tuned tiles: %s", strerror(errno));
        st = vxm_temp_commit(be->ctx, tmp, path, st);
        free(tmp);
    }
    free(text);
    if (!st)
        snprintf(path_out, n, "%s", path);
    free(path);
    return st;
}
