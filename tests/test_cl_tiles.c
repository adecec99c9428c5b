/* The OpenCL tile table (issue 10, src/backend_opencl/cl_tile.h) and the buffer pool (cl_pool.c), on every OpenCL
 * device:
 *   - tile strings parse and print back; malformed ones are refused;
 *   - precedence: environment over the tuned file over the built-in table (CPU devices: direct);
 *   - a tuned file written by vxm_cl_tiles_save is read back by the next backend; a damaged one is ignored with a
 *     warning note; a tile that does not fit the device (work-group / local memory) falls back to direct, noted;
 *   - the pool hands a released buffer to the next allocation of the same size (and not to a much smaller one),
 *     and VXM_OPENCL_POOL_MB=0 turns it off. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_opencl/cl_internal.h"
#include "backend_opencl/cl_tile.h"
#include "test_backends.h"
#include "test_util.h"

static vxm_backend *open_dev(vxm_context *ctx, const vxm_opencl_device_info *d)
{
    vxm_backend *be = NULL;
    vxm_context_clear_notes(ctx);
    if (vxm_backend_opencl_create(ctx, d->platform, d->device, &be) != VXM_OK) {
        tu_report(0, "open opencl device", "%s", vxm_context_error(ctx));
        return NULL;
    }
    return be;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void check_parse(void)
{
    vxm_cl_tile t = {0, 0, 0, 0, 0};
    char buf[64];
    tu_report(vxm_cl_tile_parse("128x32x16x8x4", &t) == 0 && t.tm == 128 && t.tn == 32 && t.tk == 16 && t.rm == 8 &&
                  t.rn == 4,
              "tile parse", "got %dx%dx%dx%dx%d", t.tm, t.tn, t.tk, t.rm, t.rn);
    vxm_cl_tile_format(&t, buf, sizeof buf);
    tu_report(strcmp(buf, "128x32x16x8x4") == 0, "tile format", "got %s", buf);
    tu_report(vxm_cl_tile_parse("direct", &t) == 0 && t.tm == 0, "tile parse direct", "tm %d", t.tm);
    static const char *const bad[] = {"", "128x32x16x8", "128x32x16x8x4x", "0x32x16x8x4", "-1x2x3x4x5",
                                      "128x32x16x8x99", "abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        tu_report(vxm_cl_tile_parse(bad[i], &t) != 0, "tile parse refuses malformed", "'%s' accepted", bad[i]);
}

static void check_device(vxm_context *ctx, const vxm_opencl_device_info *d, const char *dir)
{
    char path[512], tag[160];
    snprintf(path, sizeof path, "%s/tune.json", dir);
    snprintf(tag, sizeof tag, "%s/%s", d->platform_name, d->device_name);
    unsetenv("VXM_OPENCL_CONV_TILE");
    unsetenv("VXM_OPENCL_FILTER_TILE");

    /* built-in: CPU devices run the direct kernels */
    setenv("VXM_TUNE_FILE", "0", 1);
    vxm_backend *be = open_dev(ctx, d);
    if (!be)
        return;
    vxm_cl *cl = vxm_cl_of(be);
    if (!be->is_gpu)
        tu_report(vxm_cl_tile_for(cl, VXM_TILE_CONV, 32)->tm == 0 && vxm_cl_tile_for(cl, VXM_TILE_FILTER, 16)->tm == 0,
                  "tiles: CPU device built-in is direct", "%s", tag);
    tu_report(strcmp(cl->tile_source, "built-in") == 0, "tiles: built-in source", "%s: %s", tag, cl->tile_source);

    /* save -> load round trip */
    vxm_cl_tile a = {32, 16, 8, 4, 4}, b = {64, 32, 16, 8, 4};
    cl->tile[VXM_TILE_CONV][VXM_TILE_COUT16] = a;
    cl->tile[VXM_TILE_FILTER][VXM_TILE_COUT32] = b;
    setenv("VXM_TUNE_FILE", path, 1);
    char saved[512] = "";
    vxm_status st = vxm_cl_tiles_save(be, saved, sizeof saved);
    tu_report(st == VXM_OK && strcmp(saved, path) == 0, "tiles: saved", "%s: %s", tag, vxm_context_error(ctx));
    vxm_backend_close(be);
    if ((be = open_dev(ctx, d)) == NULL)
        return;
    cl = vxm_cl_of(be);
    const vxm_cl_tile *ra = vxm_cl_tile_for(cl, VXM_TILE_CONV, 16), *rb = vxm_cl_tile_for(cl, VXM_TILE_FILTER, 20);
    int fits = vxm_cl_tile_fits(cl, &a) && vxm_cl_tile_fits(cl, &b);
    tu_report(!fits || (memcmp(ra, &a, sizeof a) == 0 && memcmp(rb, &b, sizeof b) == 0 &&
                        strcmp(cl->tile_source, "tuned") == 0),
              "tiles: tuned file read back", "%s: source %s, conv16 tm %d, filter32 tm %d", tag, cl->tile_source,
              ra->tm, rb->tm);

    /* environment over the tuned file */
    vxm_backend_close(be);
    setenv("VXM_OPENCL_CONV_TILE", "direct", 1);
    if ((be = open_dev(ctx, d)) == NULL)
        return;
    cl = vxm_cl_of(be);
    tu_report(vxm_cl_tile_for(cl, VXM_TILE_CONV, 16)->tm == 0 && strcmp(cl->tile_source, "environment") == 0,
              "tiles: environment overrides the tuned file", "%s: tm %d (%s)", tag,
              vxm_cl_tile_for(cl, VXM_TILE_CONV, 16)->tm, cl->tile_source);
    vxm_backend_close(be);
    unsetenv("VXM_OPENCL_CONV_TILE");

    /* a tile too large for the device: direct, with a note */
    setenv("VXM_OPENCL_FILTER_TILE", "1024x1024x1024x16x4", 1);
    if ((be = open_dev(ctx, d)) == NULL)
        return;
    cl = vxm_cl_of(be);
    tu_report(vxm_cl_tile_for(cl, VXM_TILE_FILTER, 16)->tm == 0 && strstr(vxm_context_notes(ctx), "does not fit"),
              "tiles: oversized tile falls back to direct with a note", "%s: notes '%s'", tag,
              vxm_context_notes(ctx));
    vxm_backend_close(be);
    unsetenv("VXM_OPENCL_FILTER_TILE");

    /* damaged tuned file */
    write_file(path, "{\"tiles\": {\"conv\": {\"cout16\": 12}}");
    if ((be = open_dev(ctx, d)) == NULL)
        return;
    cl = vxm_cl_of(be);
    tu_report(strcmp(cl->tile_source, "built-in") == 0 && strstr(vxm_context_notes(ctx), "damaged tuned-tile file"),
              "tiles: damaged tuned file ignored with a warning", "%s: source %s, notes '%s'", tag, cl->tile_source,
              vxm_context_notes(ctx));

    /* buffer pool */
    vxm_buffer *x = NULL, *y = NULL, *z = NULL;
    st = be->ops->buffer_alloc(be, 1000, &x);
    cl_mem mx = st ? NULL : x->mem;
    be->ops->buffer_free(be, x);
    if (!st)
        st = be->ops->buffer_alloc(be, 1000, &y);
    tu_report(!st && y->mem == mx, "pool: same size reuses the released buffer", "%s", tag);
    if (!st)
        st = be->ops->buffer_alloc(be, 100, &z);
    tu_report(!st && z->mem != mx && z->nfloats == 100, "pool: a much smaller request gets a new buffer", "%s", tag);
    be->ops->buffer_free(be, y);
    be->ops->buffer_free(be, z);
    vxm_backend_close(be);
    setenv("VXM_OPENCL_POOL_MB", "0", 1);
    if ((be = open_dev(ctx, d)) == NULL)
        return;
    st = be->ops->buffer_alloc(be, 1000, &x);
    tu_report(!st && vxm_cl_of(be)->pool_limit == 0, "pool: VXM_OPENCL_POOL_MB=0 turns it off", "%s", tag);
    if (!st)
        be->ops->buffer_free(be, x);
    tu_report(vxm_cl_of(be)->npool == 0, "pool: nothing kept when off", "%s: %d kept", tag, vxm_cl_of(be)->npool);
    vxm_backend_close(be);
    unsetenv("VXM_OPENCL_POOL_MB");
    unsetenv("VXM_TUNE_FILE");
    unlink(path);
}

int main(void)
{
    check_parse();
    vxm_context *ctx = vxm_context_create();
    vxm_opencl_device_info info[TB_MAX];
    int nd = vxm_opencl_enumerate(ctx, info, TB_MAX);
    if (nd == 0)
        tu_skip("cl tiles", "no OpenCL device");
    char dir[] = "/tmp/vxm_tiles_XXXXXX";
    if (!mkdtemp(dir)) {
        printf("FAIL cl tiles: no temp folder\n");
        return 1;
    }
    for (int i = 0; i < nd; i++)
        check_device(ctx, &info[i], dir);
    rmdir(dir);
    vxm_context_free(ctx);
    return tu_exit_code();
}
