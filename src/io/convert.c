/* Element decoding (any numeric type -> float32), Fortran <-> C layout, and the shape rules of io.h. */
#include "io/io.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

size_t vxm_dtype_size(vxm_dtype dt)
{
    switch (dt) {
    case VXM_DT_BOOL: case VXM_DT_U8: case VXM_DT_I8: return 1;
    case VXM_DT_U16: case VXM_DT_I16: case VXM_DT_F16: return 2;
    case VXM_DT_U32: case VXM_DT_I32: case VXM_DT_F32: return 4;
    case VXM_DT_U64: case VXM_DT_I64: case VXM_DT_F64: return 8;
    }
    return 0;
}

int vxm_host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static float half_to_float(uint16_t h)
{
    int sign = (h >> 15) & 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v;
    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(m | 0x400), e - 25);
    return sign ? -v : v;
}

static inline uint16_t bs16(uint16_t v) { return __builtin_bswap16(v); }
static inline uint32_t bs32(uint32_t v) { return __builtin_bswap32(v); }
static inline uint64_t bs64(uint64_t v) { return __builtin_bswap64(v); }

/* One loop per stored type: load (unaligned-safe memcpy), optionally swap through the unsigned type of the
 * same width, reinterpret, convert.  Values go through double so that scaling matches nibabel (float64). */
#define DECODE_LOOP(STORE_T, BITS_T, SWAP, TO_DOUBLE)                                                         \
    do {                                                                                                      \
        for (size_t i = 0; i < n; i++) {                                                                      \
            BITS_T bits;                                                                                      \
            STORE_T val;                                                                                      \
            memcpy(&bits, p + i * sizeof(BITS_T), sizeof(BITS_T));                                            \
            if (swap)                                                                                         \
                bits = SWAP(bits);                                                                            \
            memcpy(&val, &bits, sizeof val);                                                                  \
            double x = TO_DOUBLE(val);                                                                        \
            dst[i] = scale ? (float)(x * scale[0] + scale[1]) : (float)x;                                     \
        }                                                                                                     \
    } while (0)

#define AS_DOUBLE(v) ((double)(v))
#define NO_SWAP(v) (v)
#define HALF_TO_DOUBLE(v) ((double)half_to_float(v))

void vxm_io_decode(const void *src, vxm_dtype dt, int swap, const double *scale, size_t n, float *dst)
{
    const unsigned char *p = src;
    if (dt == VXM_DT_F32 && !swap && !scale) { /* the common case: a straight copy */
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    switch (dt) {
    case VXM_DT_BOOL:
        for (size_t i = 0; i < n; i++)
            dst[i] = scale ? (float)((p[i] ? 1.0 : 0.0) * scale[0] + scale[1]) : (p[i] ? 1.0f : 0.0f);
        break;
    case VXM_DT_U8: DECODE_LOOP(uint8_t, uint8_t, NO_SWAP, AS_DOUBLE); break;
    case VXM_DT_I8: DECODE_LOOP(int8_t, uint8_t, NO_SWAP, AS_DOUBLE); break;
    case VXM_DT_U16: DECODE_LOOP(uint16_t, uint16_t, bs16, AS_DOUBLE); break;
    case VXM_DT_I16: DECODE_LOOP(int16_t, uint16_t, bs16, AS_DOUBLE); break;
    case VXM_DT_U32: DECODE_LOOP(uint32_t, uint32_t, bs32, AS_DOUBLE); break;
    case VXM_DT_I32: DECODE_LOOP(int32_t, uint32_t, bs32, AS_DOUBLE); break;
    case VXM_DT_U64: DECODE_LOOP(uint64_t, uint64_t, bs64, AS_DOUBLE); break;
    case VXM_DT_I64: DECODE_LOOP(int64_t, uint64_t, bs64, AS_DOUBLE); break;
    case VXM_DT_F16: DECODE_LOOP(uint16_t, uint16_t, bs16, HALF_TO_DOUBLE); break;
    case VXM_DT_F32: DECODE_LOOP(float, uint32_t, bs32, AS_DOUBLE); break;
    case VXM_DT_F64: DECODE_LOOP(double, uint64_t, bs64, AS_DOUBLE); break;
    }
}

/* Both transposes work on tiles of TILE consecutive i for one j: on the Fortran side that is TILE contiguous
 * elements per (k, c), on the C side TILE contiguous runs of n2*nc elements, so both sides stream through
 * memory (a plain strided loop is several times slower on 160x192x224x3 warps). */
#define TILE 16
#define TILE_MAX_FLOATS ((size_t)1 << 22)

void vxm_io_fortran_to_c(int threads, const void *src, vxm_dtype dt, int swap, const double *scale, size_t n0, size_t n1,
                         size_t n2, size_t nc, float *dst)
{
    const unsigned char *p = src;
    size_t sz = vxm_dtype_size(dt), run = n2 * nc;
    if ((n0 > 1) + (n1 > 1) + (n2 > 1) + (nc > 1) <= 1) { /* one non-trivial axis: both orders agree */
        vxm_io_decode(src, dt, swap, scale, n0 * n1 * n2 * nc, dst);
        return;
    }
    /* one tile per thread; rows j are independent, so any thread count gives the same result */
    if (threads < 1)
        threads = 1;
    float *tiles = run <= TILE_MAX_FLOATS / TILE ? malloc((size_t)threads * TILE * run * sizeof(float)) : NULL;
    float *tile = tiles;
    if (!tile) { /* fallback: element by element */
        for (size_t c = 0; c < nc; c++)
            for (size_t k = 0; k < n2; k++)
                for (size_t j = 0; j < n1; j++)
                    for (size_t i = 0; i < n0; i++)
                        vxm_io_decode(p + (i + n0 * (j + n1 * (k + n2 * c))) * sz, dt, swap, scale, 1,
                                      dst + ((i * n1 + j) * n2 + k) * nc + c);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t j = 0; j < n1; j++) {
        float *tile = tiles + (size_t)omp_get_thread_num() * TILE * run;
        for (size_t i0 = 0; i0 < n0; i0 += TILE) {
            size_t m = n0 - i0 < TILE ? n0 - i0 : TILE;
            for (size_t c = 0; c < nc; c++)
                for (size_t k = 0; k < n2; k++) /* tile[(k*nc + c)*TILE + ii] = src(i0+ii, j, k, c) */
                    vxm_io_decode(p + (i0 + n0 * (j + n1 * (k + n2 * c))) * sz, dt, swap, scale, m,
                                  tile + (k * nc + c) * TILE);
            for (size_t ii = 0; ii < m; ii++) {
                float *d = dst + ((i0 + ii) * n1 + j) * run;
                for (size_t kc = 0; kc < run; kc++)
                    d[kc] = tile[kc * TILE + ii];
            }
        }
    }
    free(tiles);
}

void vxm_io_c_to_fortran(int threads, const float *src, size_t n0, size_t n1, size_t n2, size_t nc, float *dst)
{
    size_t run = n2 * nc;
    if ((n0 > 1) + (n1 > 1) + (n2 > 1) + (nc > 1) <= 1) {
        memcpy(dst, src, n0 * n1 * n2 * nc * sizeof(float));
        return;
    }
    if (threads < 1)
        threads = 1;
    float *tiles = run <= TILE_MAX_FLOATS / TILE ? malloc((size_t)threads * TILE * run * sizeof(float)) : NULL;
    float *tile = tiles;
    if (!tile) {
        for (size_t c = 0; c < nc; c++)
            for (size_t k = 0; k < n2; k++)
                for (size_t j = 0; j < n1; j++)
                    for (size_t i = 0; i < n0; i++)
                        dst[i + n0 * (j + n1 * (k + n2 * c))] = src[((i * n1 + j) * n2 + k) * nc + c];
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t j = 0; j < n1; j++) {
        float *tile = tiles + (size_t)omp_get_thread_num() * TILE * run;
        for (size_t i0 = 0; i0 < n0; i0 += TILE) {
            size_t m = n0 - i0 < TILE ? n0 - i0 : TILE;
            for (size_t ii = 0; ii < m; ii++) {
                const float *s = src + ((i0 + ii) * n1 + j) * run;
                for (size_t kc = 0; kc < run; kc++)
                    tile[kc * TILE + ii] = s[kc];
            }
            for (size_t c = 0; c < nc; c++)
                for (size_t k = 0; k < n2; k++)
                    memcpy(dst + i0 + n0 * (j + n1 * (k + n2 * c)), tile + (k * nc + c) * TILE, m * sizeof(float));
        }
    }
    free(tiles);
}

void vxm_io_disk_dims(const vxm_volume *v, size_t d[3])
{
    if (v->ndim == 2) {
        d[0] = (size_t)v->shape[1];
        d[1] = (size_t)v->shape[2];
        d[2] = 1;
    } else {
        d[0] = (size_t)v->shape[0];
        d[1] = (size_t)v->shape[1];
        d[2] = (size_t)v->shape[2];
    }
}

double vxm_io_alloc_ceiling(void)
{
    const char *e = getenv("VXM_MAX_ALLOC_MB");
    if (e && *e) {
        char *end;
        double mb = strtod(e, &end);
        if (end != e && mb > 0)
            return mb * 1048576.0;
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page : 1e18;
}

vxm_status vxm_io_volume_check(vxm_context *ctx, const char *path, int64_t nx, int64_t ny, int64_t nz, int64_t nc)
{
    if (nx < 1 || ny < 1 || nz < 1 || nc < 1)
        return vxm_error(ctx, VXM_EFORMAT, path, "invalid array shape %lld x %lld x %lld x %lld", (long long)nx,
                         (long long)ny, (long long)nz, (long long)nc);
    if (nx > INT_MAX || ny > INT_MAX || nz > INT_MAX || nc > INT_MAX ||
        (double)nx * (double)ny * (double)nz * (double)nc > (double)(SIZE_MAX / sizeof(float) / 2))
        return vxm_error(ctx, VXM_EFORMAT, path, "array too large (%lld x %lld x %lld x %lld)", (long long)nx,
                         (long long)ny, (long long)nz, (long long)nc);
    /* A corrupt header must not turn into a huge allocation (issue 11: an MGZ with damaged dimensions asked for
     * 8.5e15 bytes): the float32 volume may not exceed the machine's memory, or VXM_MAX_ALLOC_MB when set. */
    double need = (double)nx * (double)ny * (double)nz * (double)nc * (double)sizeof(float);
    double limit = vxm_io_alloc_ceiling();
    if (need > limit)
        return vxm_error(ctx, VXM_EFORMAT, path,
                         "header dimensions %lld x %lld x %lld x %lld need %.3g GB as float32, more than the %s "
                         "(%.3g GB): a corrupt header?",
                         (long long)nx, (long long)ny, (long long)nz, (long long)nc, need / 1e9,
                         getenv("VXM_MAX_ALLOC_MB") ? "VXM_MAX_ALLOC_MB limit" : "machine's memory", limit / 1e9);
    return VXM_OK;
}

vxm_status vxm_io_volume_alloc(vxm_context *ctx, const char *path, int64_t nx, int64_t ny, int64_t nz, int64_t nc,
                               vxm_volume **out)
{
    *out = NULL;
    vxm_status st = vxm_io_volume_check(ctx, path, nx, ny, nz, nc);
    if (st)
        return st;
    int shape[3];
    int ndim;
    if (nz == 1) {
        ndim = 2;
        shape[0] = 1;
        shape[1] = (int)nx;
        shape[2] = (int)ny;
    } else {
        ndim = 3;
        shape[0] = (int)nx;
        shape[1] = (int)ny;
        shape[2] = (int)nz;
    }
    vxm_volume *v = vxm_volume_new(ndim, shape, (int)nc);
    if (!v)
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory for a %lld x %lld x %lld x %lld volume",
                         (long long)nx, (long long)ny, (long long)nz, (long long)nc);
    *out = v;
    return VXM_OK;
}
