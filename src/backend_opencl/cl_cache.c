/* On-disk cache of built OpenCL program binaries (see cl_cache.h for the directory, key and environment).
 *
 * File layout (native byte order: a cache belongs to one machine, and the magic rejects anything else):
 *   "VXMCLPB\0"  u32 format (1)  u32 0  u64 key  u64 binary size  u64 FNV-1a 64 of the binary  binary bytes
 * The key in the header guards against a renamed or mixed-up file; the checksum against a damaged one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend_opencl/cl_cache.h"
#include "core/context.h"
#include "core/tempfile.h"

#define CACHE_MAGIC "VXMCLPB"
#define CACHE_FORMAT 1u
#define CACHE_HEADER 40
#define CACHE_MAX_BINARY ((uint64_t)1 << 30) /* a size above this is a damaged header, not a program */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t fnv1a_field(uint64_t h, const char *s)
{
    uint64_t len = s ? strlen(s) : 0;
    if (s)
        h = fnv1a(h, s, (size_t)len);
    return fnv1a(h, &len, sizeof len);
}

uint64_t vxm_cl_cache_key(const char *const *sources, int nsources, const char *const *fields, int nfields)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < nsources; i++)
        h = fnv1a_field(h, sources[i]);
    for (int i = 0; i < nfields; i++)
        h = fnv1a_field(h, fields[i]);
    return h;
}

/* A platform or device string of any length (malloc'd; "?" when the driver does not answer). */
char *vxm_cl_info_string(cl_platform_id p, cl_device_id d, unsigned what)
{
    size_t n = 0;
    cl_int e = p ? clGetPlatformInfo(p, what, 0, NULL, &n) : clGetDeviceInfo(d, what, 0, NULL, &n);
    char *s = malloc(e == CL_SUCCESS && n ? n + 1 : 2);
    if (!s)
        return NULL;
    if (e != CL_SUCCESS || !n ||
        (p ? clGetPlatformInfo(p, what, n, s, NULL) : clGetDeviceInfo(d, what, n, s, NULL)) != CL_SUCCESS) {
        strcpy(s, "?");
        return s;
    }
    s[n] = '\0';
    return s;
}

/* mkdir that accepts an existing directory; 0 on success. */
static int make_dir(const char *path)
{
    return mkdir(path, 0777) == 0 || errno == EEXIST ? 0 : -1;
}

char *vxm_cl_cache_dir_path(int create)
{
    const char *dir = getenv("VXM_CL_CACHE_DIR");
    if (dir && *dir)
        return !create || make_dir(dir) == 0 ? strdup(dir) : NULL;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[4096];
    if (xdg && *xdg)
        snprintf(base, sizeof base, "%s", xdg);
    else if (!(home && *home && (size_t)snprintf(base, sizeof base, "%s/.cache", home) < sizeof base))
        return NULL;
    size_t n = strlen(base) + sizeof "/vxmcl";
    char *out = malloc(n);
    if (!out)
        return NULL;
    snprintf(out, n, "%s/vxmcl", base);
    if (create && (make_dir(base) != 0 || make_dir(out) != 0)) {
        free(out);
        return NULL;
    }
    return out;
}

/* PoCL keeps its own kernel cache ($XDG_CACHE_HOME/pocl, unless POCL_KERNEL_CACHE=0): a second run is 0.08 s
 * without ours, while asking PoCL for CL_PROGRAM_BINARIES compiles every kernel of the program (9 s instead of
 * 1.8 s for the first run, measured on PoCL 3.1 / AVX-512), so ours is used there only when PoCL's is off. */
static int driver_caches(const char *platform_name)
{
    const char *pc = getenv("POCL_KERNEL_CACHE");
    return strstr(platform_name, "Portable Computing Language") && !(pc && strcmp(pc, "0") == 0);
}

/* The cache file for this program on this device, or NULL (cache off); *key receives the key. */
static char *cache_path(vxm_cl *cl, const char *const *sources, int nsources, const char *options, uint64_t *key)
{
    char *pname = vxm_cl_info_string(cl->platform, NULL, CL_PLATFORM_NAME);
    const char *off = getenv("VXM_CL_CACHE");
    char *dir = pname && !driver_caches(pname) && !(off && strcmp(off, "0") == 0) ? vxm_cl_cache_dir_path(1) : NULL;
    free(pname);
    if (!dir)
        return NULL;
    char *info[5] = {vxm_cl_info_string(cl->platform, NULL, CL_PLATFORM_NAME),
                     vxm_cl_info_string(cl->platform, NULL, CL_PLATFORM_VERSION),
                     vxm_cl_info_string(NULL, cl->device, CL_DEVICE_NAME), vxm_cl_info_string(NULL, cl->device, CL_DEVICE_VERSION),
                     vxm_cl_info_string(NULL, cl->device, CL_DRIVER_VERSION)};
    const char *salt = getenv("VXM_CL_CACHE_SALT");
    const char *fields[8] = {options, info[0], info[1], info[2], info[3], info[4], VXM_VERSION_STRING, salt};
    *key = vxm_cl_cache_key(sources, nsources, fields, 8);
    for (int i = 0; i < 5; i++)
        free(info[i]);
    size_t n = strlen(dir) + 40;
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/program-%016llx.bin", dir, (unsigned long long)*key);
    free(dir);
    return path;
}

/* VXM_CL_CACHE_DEBUG=1: a note says whether the program came from the cache or went into it (tests). */
static int debug_notes(void)
{
    const char *d = getenv("VXM_CL_CACHE_DEBUG");
    return d && strcmp(d, "1") == 0;
}

/* The program from the cache file, or NULL: no file (silent), or a bad one (one warning note). */
static cl_program cache_load(vxm_backend *be, const char *path, uint64_t key, const char *options)
{
    vxm_cl *cl = be->impl;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    const char *why = NULL;
    unsigned char *bin = NULL;
    unsigned char head[CACHE_HEADER];
    uint32_t format;
    uint64_t hkey, size, sum;
    if (fread(head, 1, sizeof head, f) != sizeof head) {
        why = "short header";
    } else {
        memcpy(&format, head + 8, 4);
        memcpy(&hkey, head + 16, 8);
        memcpy(&size, head + 24, 8);
        memcpy(&sum, head + 32, 8);
        if (memcmp(head, CACHE_MAGIC, 8) != 0)
            why = "bad magic";
        else if (format != CACHE_FORMAT)
            why = "unknown format";
        else if (hkey != key)
            why = "key mismatch";
        else if (size == 0 || size > CACHE_MAX_BINARY)
            why = "bad binary size";
        else if (!(bin = malloc((size_t)size)))
            why = "out of memory";
        else if (fread(bin, 1, (size_t)size, f) != size)
            why = "truncated";
        else if (fgetc(f) != EOF)
            why = "trailing bytes";
        else if (fnv1a(0xcbf29ce484222325ULL, bin, (size_t)size) != sum)
            why = "checksum mismatch";
    }
    fclose(f);
    cl_program prog = NULL;
    if (!why) {
        size_t len = (size_t)size;
        const unsigned char *bins[1] = {bin};
        cl_int status = CL_SUCCESS, err;
        prog = clCreateProgramWithBinary(cl->context, 1, &cl->device, &len, bins, &status, &err);
        if (!prog || err != CL_SUCCESS || status != CL_SUCCESS)
            why = "binary rejected by the driver";
        else if (clBuildProgram(prog, 1, &cl->device, options, NULL, NULL) != CL_SUCCESS)
            why = "binary does not build";
        if (why && prog) {
            clReleaseProgram(prog);
            prog = NULL;
        }
    }
    free(bin);
    if (why)
        vxm_note(be->ctx, "warning: %s: ignoring a corrupt OpenCL program cache (%s)", path, why);
    return prog;
}

/* Writes the binary of `prog` to `path` (temp file + rename); any failure skips the cache silently. */
static void cache_store(vxm_backend *be, cl_program prog, const char *path, uint64_t key)
{
    size_t size = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || !size ||
        size > CACHE_MAX_BINARY)
        return;
    unsigned char *bin = malloc(CACHE_HEADER + size);
    if (!bin)
        return;
    unsigned char *bins[1] = {bin + CACHE_HEADER};
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS) {
        free(bin);
        return;
    }
    uint32_t format = CACHE_FORMAT, zero = 0;
    uint64_t size64 = size, sum = fnv1a(0xcbf29ce484222325ULL, bin + CACHE_HEADER, size);
    memcpy(bin, CACHE_MAGIC, 8);
    memcpy(bin + 8, &format, 4);
    memcpy(bin + 12, &zero, 4);
    memcpy(bin + 16, &key, 8);
    memcpy(bin + 24, &size64, 8);
    memcpy(bin + 32, &sum, 8);
    char *tmp = NULL;
    int fd = -1;
    if (vxm_temp_create(NULL, path, &tmp, &fd) == VXM_OK) { /* NULL context: a failure records no error */
        size_t left = CACHE_HEADER + size, off = 0;
        while (left) {
            ssize_t w = write(fd, bin + off, left);
            if (w <= 0 && !(w < 0 && errno == EINTR))
                break;
            if (w > 0) {
                off += (size_t)w;
                left -= (size_t)w;
            }
        }
        int ok = close(fd) == 0 && left == 0 && rename(tmp, path) == 0;
        if (!ok)
            unlink(tmp);
        else if (debug_notes())
            vxm_note(be->ctx, "note: %s: OpenCL program cache stored", path);
        free(tmp);
    }
    free(bin);
}

vxm_status vxm_cl_cache_build_program(vxm_backend *be, const char *const *sources, int nsources, const char *options,
                                      vxm_cl_build_failed_fn build_failed, cl_program *out)
{
    vxm_cl *cl = be->impl;
    *out = NULL;
    uint64_t key = 0;
    char *path = cache_path(cl, sources, nsources, options, &key);
    if (path && (*out = cache_load(be, path, key, options)) != NULL) {
        if (debug_notes())
            vxm_note(be->ctx, "note: %s: OpenCL program cache loaded", path);
        free(path);
        return VXM_OK;
    }
    cl_int err;
    cl_program prog = clCreateProgramWithSource(cl->context, (cl_uint)nsources, (const char **)sources, NULL, &err);
    if (!prog) {
        free(path);
        return vxm_cl_fail(be, err, 0, "clCreateProgramWithSource");
    }
    err = clBuildProgram(prog, 1, &cl->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        free(path);
        vxm_status st = build_failed(be, prog, err);
        clReleaseProgram(prog);
        return st;
    }
    if (path)
        cache_store(be, prog, path, key);
    free(path);
    *out = prog;
    return VXM_OK;
}

vxm_status vxm_cl_cache_build(vxm_backend *be, const char *const *sources, int nsources, const char *options,
                              vxm_cl_build_failed_fn build_failed)
{
    vxm_cl *cl = be->impl;
    return vxm_cl_cache_build_program(be, sources, nsources, options, build_failed, &cl->program);
}
