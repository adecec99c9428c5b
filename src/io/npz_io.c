/* NumPy .npz archives (zip of .npy members, stored or deflated) through libzip.
 *
 * Array selection follows VoxelMorph's load_volfile: an archive holding exactly one array yields that array
 * whatever the key; otherwise the member "<key>.npy" (key NULL = "vol") is read, and a missing key is
 * VXM_EFORMAT naming the arrays that are there.  Writing stores the volume as "vol.npy", deflated (like
 * np.savez_compressed(path, vol=...)). */
#include "io/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

static int is_array_member(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && name[n - 1] != '/';
}

/* key of a member name: the name without a trailing ".npy" */
static size_t key_len(const char *name)
{
    size_t n = strlen(name);
    return (n > 4 && strcmp(name + n - 4, ".npy") == 0) ? n - 4 : n;
}

/* vxm_io_reader over an open archive member */
static long long npz_member_read(void *zf, void *buf, size_t n, const char **why)
{
    zip_int64_t r = zip_fread(zf, buf, n);
    if (r < 0)
        *why = zip_file_strerror(zf);
    return r < 0 ? -1 : (long long)r;
}

vxm_status vxm_npz_read(vxm_context *ctx, const char *path, const char *key, vxm_volume **out)
{
    *out = NULL;
    int zerr = 0;
    zip_t *za = zip_open(path, ZIP_RDONLY, &zerr);
    if (!za) {
        zip_error_t e;
        zip_error_init_with_code(&e, zerr);
        vxm_status code = (zerr == ZIP_ER_OPEN || zerr == ZIP_ER_READ) ? VXM_EIO : VXM_EFORMAT;
        vxm_status st = vxm_error(ctx, code, path, "%s%s",
                                  code == VXM_EFORMAT ? "not a valid .npz archive (truncated or corrupt): " : "",
                                  zip_error_strerror(&e));
        zip_error_fini(&e);
        return st;
    }
    vxm_status st = VXM_OK;
    unsigned char *buf = NULL;
    zip_file_t *zf = NULL;
    zip_int64_t n = zip_get_num_entries(za, 0), only = -1, found = -1;
    int arrays = 0;
    const char *want = key ? key : "vol";
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
        if (!name || !is_array_member(name))
            continue;
        arrays++;
        only = i;
        if (key_len(name) == strlen(want) && strncmp(name, want, strlen(want)) == 0)
            found = i;
    }
    zip_int64_t idx = arrays == 1 ? only : found;
    if (idx < 0) {
        char names[512];
        size_t o = 0;
        names[0] = '\0';
        for (zip_int64_t i = 0; i < n && o < sizeof names - 1; i++) {
            const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
            if (!name || !is_array_member(name))
                continue;
            int w = snprintf(names + o, sizeof names - o, "%s%.*s", o ? ", " : "", (int)key_len(name), name);
            o = w > 0 ? o + (size_t)w : o;
        }
        if (o >= sizeof names - 1)
            snprintf(names + sizeof names - 5, 5, "...");
        st = arrays ? vxm_error(ctx, VXM_EFORMAT, path, "no array '%s' in the archive (arrays: %s)", want, names)
                    : vxm_error(ctx, VXM_EFORMAT, path, "the .npz archive holds no arrays");
        goto done;
    }
    zip_stat_t zs;
    zip_stat_init(&zs);
    if (zip_stat_index(za, (zip_uint64_t)idx, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE)) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "cannot read the archive member: %s", zip_strerror(za));
        goto done;
    }
    /* The member size comes from the zip directory, which may lie (issue 11): bounded by the allocation ceiling
     * (float64 data is twice its float32 volume, plus the .npy header), and the buffer grows with the data that
     * really arrives. */
    if ((double)zs.size > 2.0 * vxm_io_alloc_ceiling() + 65536.0 || zs.size > (zip_uint64_t)(SIZE_MAX / 2)) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "archive member %s too large (%llu bytes): a corrupt archive?",
                       zs.name, (unsigned long long)zs.size);
        goto done;
    }
    zf = zip_fopen_index(za, (zip_uint64_t)idx, 0);
    if (!zf) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "cannot open the archive member %s: %s", zs.name, zip_strerror(za));
        goto done;
    }
    char what[320];
    snprintf(what, sizeof what, "archive member %s", zs.name);
    if ((st = vxm_io_read_grow(ctx, path, what, npz_member_read, zf, (size_t)zs.size, &buf)))
        goto done;
    st = vxm_npy_parse(ctx, path, buf, (size_t)zs.size, out);
done:
    if (zf)
        zip_fclose(zf);
    free(buf);
    zip_discard(za);
    return st;
}

vxm_status vxm_npz_write(vxm_context *ctx, const char *path, int fd, const vxm_volume *vol)
{
    vxm_sink sink;
    if (vxm_sink_open(&sink, fd, -1, 1))
        return vxm_error(ctx, VXM_EIO, path, "cannot write: %s", vxm_sink_strerror(&sink));
    unsigned char *npy = NULL, *zipped = NULL;
    size_t npy_len = 0;
    vxm_status st = vxm_npy_serialize(ctx, path, vol, &npy, &npy_len);
    if (st) {
        vxm_sink_close(&sink);
        return st;
    }
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *mem = zip_source_buffer_create(NULL, 0, 0, &ze);
    zip_t *za = NULL;
    zip_source_t *member = NULL;
    if (!mem)
        goto zip_failed;
    za = zip_open_from_source(mem, ZIP_TRUNCATE, &ze);
    if (!za)
        goto zip_failed;
    zip_source_keep(mem); /* read the archive back after zip_close */
    member = zip_source_buffer(za, npy, npy_len, 1);
    if (!member)
        goto zip_failed_za;
    npy = NULL; /* owned by the source now */
    zip_int64_t idx = zip_file_add(za, "vol.npy", member, ZIP_FL_ENC_UTF_8);
    if (idx < 0) {
        zip_source_free(member);
        goto zip_failed_za;
    }
    if (zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_DEFLATE, 1) != 0)
        goto zip_failed_za;
    if (zip_close(za) != 0)
        goto zip_failed_za;
    za = NULL;

    if (zip_source_open(mem) != 0)
        goto zip_failed_src;
    if (zip_source_seek(mem, 0, SEEK_END) != 0) {
        zip_source_close(mem);
        goto zip_failed_src;
    }
    zip_int64_t zlen = zip_source_tell(mem);
    if (zlen < 0 || zip_source_seek(mem, 0, SEEK_SET) != 0 || !(zipped = malloc(zlen ? (size_t)zlen : 1))) {
        zip_source_close(mem);
        goto zip_failed_src;
    }
    if (zip_source_read(mem, zipped, (zip_uint64_t)zlen) != zlen) {
        zip_source_close(mem);
        goto zip_failed_src;
    }
    zip_source_close(mem);
    zip_source_free(mem);
    mem = NULL;
    if (vxm_sink_write(&sink, zipped, (size_t)zlen) || vxm_sink_close(&sink)) {
        vxm_sink_close(&sink);
        st = vxm_error(ctx, VXM_EIO, path, "cannot write: %s", vxm_sink_strerror(&sink));
    }
    free(zipped);
    zip_error_fini(&ze);
    return st;

zip_failed_src:
    st = vxm_error(ctx, VXM_ENOMEM, path, "cannot build the .npz archive: %s",
                   zip_error_strerror(zip_source_error(mem)));
    goto cleanup;
zip_failed_za:
    st = vxm_error(ctx, VXM_ENOMEM, path, "cannot build the .npz archive: %s", zip_strerror(za));
    goto cleanup;
zip_failed:
    st = vxm_error(ctx, VXM_ENOMEM, path, "cannot build the .npz archive: %s", zip_error_strerror(&ze));
cleanup:
    if (za)
        zip_discard(za);
    if (mem)
        zip_source_free(mem);
    free(npy);
    free(zipped);
    zip_error_fini(&ze);
    vxm_sink_close(&sink);
    return st;
}
