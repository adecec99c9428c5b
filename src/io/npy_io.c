/* NumPy .npy (format versions 1, 2 and 3).
 *
 * Reading: dtypes bool (|b1), |u1 |i1, u2 i2 u4 i4 u8 i8 f2 f4 f8 in little- (<), big- (>) or native (=)
 * byte order; C or Fortran order.  Shape rules (io.h): leading axes of size 1 are dropped while there are
 * more than 4; then (n,) -> 2-D {1,1,n}; (H,W) -> 2-D {1,H,W}; (X,Y,Z) -> 3-D (Z == 1 gives the 2-D {1,X,Y});
 * (X,Y,Z,C) -> 3-D with C channels.  Anything else is VXM_EFORMAT.
 * Writing: version 1.0, '<f4' (host order), C order, the squeezed shape VoxelMorph saves: (X,Y,Z), (X,Y,Z,C),
 * (H,W) or (H,W,C). */
#include "io/io.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAX_DIMS 32

/* Finds the value of dictionary key `key` in the header text; returns a pointer just past the ':' and
 * spaces (inside the header), or NULL. */
static const char *dict_value(const char *h, size_t n, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 <= n; i++) {
        if ((h[i] == '\'' || h[i] == '"') && memcmp(h + i + 1, key, kl) == 0 && h[i + 1 + kl] == h[i]) {
            size_t j = i + kl + 2;
            while (j < n && isspace((unsigned char)h[j]))
                j++;
            if (j >= n || h[j] != ':')
                return NULL;
            j++;
            while (j < n && isspace((unsigned char)h[j]))
                j++;
            return j < n ? h + j : NULL; /* no value before the header ends (fuzz_labels: read past it) */
        }
    }
    return NULL;
}

static int parse_descr(const char *s, const char *end, char *descr, size_t dn)
{
    if (s >= end || (*s != '\'' && *s != '"'))
        return 0;
    char q = *s++;
    size_t k = 0;
    while (s < end && *s != q) {
        if (k + 1 >= dn)
            return 0;
        descr[k++] = *s++;
    }
    descr[k] = '\0';
    return s < end;
}

/* Maps a numpy type string to our dtype and whether the bytes need swapping; 0 if unsupported. */
static int dtype_of_descr(const char *d, vxm_dtype *dt, int *swap)
{
    char order = d[0];
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return 0;
    const char *t = d + 1;
    static const struct { const char *name; vxm_dtype dt; } map[] = {
        {"b1", VXM_DT_BOOL}, {"u1", VXM_DT_U8}, {"i1", VXM_DT_I8}, {"u2", VXM_DT_U16}, {"i2", VXM_DT_I16},
        {"u4", VXM_DT_U32}, {"i4", VXM_DT_I32}, {"u8", VXM_DT_U64}, {"i8", VXM_DT_I64}, {"f2", VXM_DT_F16},
        {"f4", VXM_DT_F32}, {"f8", VXM_DT_F64},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(t, map[i].name) == 0) {
            *dt = map[i].dt;
            if (vxm_dtype_size(*dt) == 1)
                *swap = 0;
            else if (order == '|')
                return 0;
            else
                *swap = (order == '<' && !vxm_host_is_little_endian()) ||
                        (order == '>' && vxm_host_is_little_endian());
            return 1;
        }
    return 0;
}

vxm_status vxm_npy_parse(vxm_context *ctx, const char *path, const unsigned char *buf, size_t len,
                         vxm_volume **out)
{
    *out = NULL;
    if (memcmp(buf, NPY_MAGIC, len < 6 ? len : 6) != 0)
        return vxm_error(ctx, VXM_EFORMAT, path, "not a .npy array (bad magic)");
    if (len < 10)
        return vxm_error(ctx, VXM_EFORMAT, path, "truncated .npy header");
    int major = buf[6];
    size_t start, hlen;
    if (major == 1) {
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8);
        start = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12)
            return vxm_error(ctx, VXM_EFORMAT, path, "truncated .npy header");
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8) | ((size_t)buf[10] << 16) | ((size_t)buf[11] << 24);
        start = 12;
    } else {
        return vxm_error(ctx, VXM_EFORMAT, path, "unsupported .npy format version %d", major);
    }
    if (hlen > len - start)
        return vxm_error(ctx, VXM_EFORMAT, path, "truncated .npy header");
    const char *h = (const char *)buf + start, *hend = h + hlen;

    char descr[32];
    const char *p = dict_value(h, hlen, "descr");
    if (!p)
        return vxm_error(ctx, VXM_EFORMAT, path, "invalid .npy header (no 'descr')");
    if (!parse_descr(p, hend, descr, sizeof descr))
        return vxm_error(ctx, VXM_EFORMAT, path, "unsupported data type (structured or invalid dtype)");
    vxm_dtype dt;
    int swap = 0;
    if (!dtype_of_descr(descr, &dt, &swap))
        return vxm_error(ctx, VXM_EFORMAT, path, "unsupported data type '%s'", descr);

    p = dict_value(h, hlen, "fortran_order");
    if (!p)
        return vxm_error(ctx, VXM_EFORMAT, path, "invalid .npy header (no 'fortran_order')");
    int fortran;
    if ((size_t)(hend - p) >= 4 && memcmp(p, "True", 4) == 0)
        fortran = 1;
    else if ((size_t)(hend - p) >= 5 && memcmp(p, "False", 5) == 0)
        fortran = 0;
    else
        return vxm_error(ctx, VXM_EFORMAT, path, "invalid .npy header (fortran_order)");

    p = dict_value(h, hlen, "shape");
    if (!p || *p != '(')
        return vxm_error(ctx, VXM_EFORMAT, path, "invalid .npy header (no 'shape')");
    int64_t shape[NPY_MAX_DIMS];
    int nd = 0;
    p++;
    for (;;) {
        while (p < hend && (isspace((unsigned char)*p) || *p == ','))
            p++;
        if (p >= hend)
            return vxm_error(ctx, VXM_EFORMAT, path, "invalid .npy header (shape)");
        if (*p == ')')
            break;
        if (!isdigit((unsigned char)*p) || nd == NPY_MAX_DIMS)
            return vxm_error(ctx, VXM_EFORMAT, path, "invalid .npy header (shape)");
        int64_t val = 0;
        while (p < hend && isdigit((unsigned char)*p)) {
            if (val > (INT64_MAX - 9) / 10)
                return vxm_error(ctx, VXM_EFORMAT, path, "invalid .npy header (shape too large)");
            val = val * 10 + (*p++ - '0');
        }
        if (p < hend && *p == 'L') /* Python 2 long */
            p++;
        shape[nd++] = val;
    }

    char shape_txt[160];
    size_t o = 0;
    shape_txt[0] = '\0';
    for (int i = 0; i < nd && o < sizeof shape_txt - 24; i++)
        o += (size_t)snprintf(shape_txt + o, sizeof shape_txt - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    const int64_t *s = shape;
    while (nd > 4 && s[0] == 1) {
        s++;
        nd--;
    }
    int64_t d4[4] = {1, 1, 1, 1};
    switch (nd) {
    case 1: d4[1] = s[0]; break; /* (n,) -> {1, 1, n} */
    case 2: d4[0] = s[0]; d4[1] = s[1]; break;
    case 3: d4[0] = s[0]; d4[1] = s[1]; d4[2] = s[2]; break;
    case 4: d4[0] = s[0]; d4[1] = s[1]; d4[2] = s[2]; d4[3] = s[3]; break;
    default:
        return vxm_error(ctx, VXM_EFORMAT, path, "unsupported array shape (%s): expected 1 to 4 axes", shape_txt);
    }
    /* the shape and the bytes present are checked before the volume is allocated */
    vxm_status st = vxm_io_volume_check(ctx, path, d4[0], d4[1], d4[2], d4[3]);
    if (st)
        return st;
    size_t count = (size_t)d4[0] * (size_t)d4[1] * (size_t)d4[2] * (size_t)d4[3], esz = vxm_dtype_size(dt);
    size_t avail = len - start - hlen;
    if (avail / esz < count)
        return vxm_error(ctx, VXM_EFORMAT, path, "truncated data (%zu of %zu bytes)", avail, count * esz);
    vxm_volume *v = NULL;
    if ((st = vxm_io_volume_alloc(ctx, path, d4[0], d4[1], d4[2], d4[3], &v)))
        return st;
    const unsigned char *data = buf + start + hlen;
    if (fortran && nd == 1) /* (n,) in Fortran order is the plain vector */
        vxm_io_decode(data, dt, swap, NULL, count, v->data);
    else if (fortran)
        vxm_io_fortran_to_c(vxm_context_effective_threads(ctx), data, dt, swap, NULL, (size_t)d4[0], (size_t)d4[1], (size_t)d4[2], (size_t)d4[3],
                            v->data);
    else
        vxm_io_decode(data, dt, swap, NULL, count, v->data);
    *out = v;
    return VXM_OK;
}

vxm_status vxm_npy_read(vxm_context *ctx, const char *path, vxm_volume **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return vxm_error(ctx, VXM_EIO, path, "%s", strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        int e = errno;
        fclose(f);
        return vxm_error(ctx, VXM_EIO, path, "%s", strerror(e));
    }
    size_t len = (size_t)sb.st_size;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(f);
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory (%zu bytes)", len);
    }
    size_t got = fread(buf, 1, len, f);
    int err = ferror(f) ? errno : 0;
    fclose(f);
    vxm_status st;
    if (err)
        st = vxm_error(ctx, VXM_EIO, path, "cannot read: %s", strerror(err));
    else
        st = vxm_npy_parse(ctx, path, buf, got, out);
    free(buf);
    return st;
}

/* The .npy v1.0 header for vol (padded so that the data starts at a multiple of 64). */
static size_t npy_header(const vxm_volume *vol, char *h, size_t hn)
{
    char shape[96];
    if (vol->ndim == 3 && vol->channels == 1)
        snprintf(shape, sizeof shape, "(%d, %d, %d)", vol->shape[0], vol->shape[1], vol->shape[2]);
    else if (vol->ndim == 3)
        snprintf(shape, sizeof shape, "(%d, %d, %d, %d)", vol->shape[0], vol->shape[1], vol->shape[2],
                 vol->channels);
    else if (vol->channels == 1)
        snprintf(shape, sizeof shape, "(%d, %d)", vol->shape[1], vol->shape[2]);
    else
        snprintf(shape, sizeof shape, "(%d, %d, %d)", vol->shape[1], vol->shape[2], vol->channels);
    char dict[160];
    int dl = snprintf(dict, sizeof dict, "{'descr': '%cf4', 'fortran_order': False, 'shape': %s, }",
                      vxm_host_is_little_endian() ? '<' : '>', shape);
    size_t total = 10 + (size_t)dl + 1;
    total = (total + 63) / 64 * 64;
    size_t hl = total - 10;
    if (total > hn)
        return 0;
    memcpy(h, NPY_MAGIC, 6);
    h[6] = 1;
    h[7] = 0;
    h[8] = (char)(hl & 0xff);
    h[9] = (char)(hl >> 8);
    memcpy(h + 10, dict, (size_t)dl);
    memset(h + 10 + dl, ' ', hl - (size_t)dl - 1);
    h[total - 1] = '\n';
    return total;
}

vxm_status vxm_npy_serialize(vxm_context *ctx, const char *path, const vxm_volume *vol, unsigned char **buf,
                             size_t *len)
{
    char h[256];
    size_t hl = npy_header(vol, h, sizeof h);
    size_t bytes = vxm_volume_numel(vol) * sizeof(float);
    *buf = malloc(hl + bytes);
    if (!*buf)
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory (%zu bytes)", hl + bytes);
    memcpy(*buf, h, hl);
    memcpy(*buf + hl, vol->data, bytes);
    *len = hl + bytes;
    return VXM_OK;
}

vxm_status vxm_npy_write(vxm_context *ctx, const char *path, int fd, const vxm_volume *vol)
{
    vxm_sink sink;
    if (vxm_sink_open(&sink, fd, -1, 1))
        return vxm_error(ctx, VXM_EIO, path, "cannot write: %s", vxm_sink_strerror(&sink));
    char h[256];
    size_t hl = npy_header(vol, h, sizeof h);
    if (vxm_sink_write(&sink, h, hl) ||
        vxm_sink_write(&sink, vol->data, vxm_volume_numel(vol) * sizeof(float)) || vxm_sink_close(&sink)) {
        vxm_sink_close(&sink);
        return vxm_error(ctx, VXM_EIO, path, "cannot write: %s", vxm_sink_strerror(&sink));
    }
    return VXM_OK;
}
