/* Shared by the libFuzzer targets (tests/fuzz/README.md): the readers take file names, so every input is
 * written to a file with the reader's extension in a per-process temporary folder (/dev/shm when writable, so
 * that millions of small writes stay in memory), read through the public API, and everything is freed.
 *
 * The harness state (the folder name) is static: libFuzzer's entry points take no user pointer.  This is test
 * code; the library itself keeps no global state. */
#ifndef VXM_FUZZ_COMMON_H
#define VXM_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "vxm.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir[64];

static inline void fuzz_cleanup(void)
{
    if (fuzz_dir[0])
        rmdir(fuzz_dir); /* the targets unlink their files after each input */
}

/* A smaller allocation ceiling than the machine's memory (io.h vxm_io_alloc_ceiling): a legitimate header may ask
 * for a large volume, and the fuzzer's -rss_limit_mb (2 GB) must not count that as a finding.  One CPU thread:
 * the readers' OpenMP loops then run in the fuzzing thread. */
static inline void fuzz_init(void)
{
    setenv("VXM_MAX_ALLOC_MB", "256", 1);
    setenv("VXM_H5_ISOLATE", "0", 1); /* libhdf5's own faults are looked for in-process (run.sh sorts them) */
    setenv("OMP_NUM_THREADS", "1", 1);
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/vxm-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_dir)) {
        perror("vxm fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_cleanup);
}

/* Writes the bytes to <dir>/in<ext> (gzip-compressed when gz) and puts the name in path. */
static inline void fuzz_write(const char *ext, const uint8_t *data, size_t size, int gz, char *path, size_t pathlen)
{
    snprintf(path, pathlen, "%s/in%s", fuzz_dir, ext);
    if (gz) {
        gzFile f = gzopen(path, "wb1");
        if (!f || (size && gzwrite(f, data, (unsigned)size) != (int)size) || gzclose(f) != Z_OK) {
            fprintf(stderr, "vxm fuzz: cannot write %s\n", path);
            abort();
        }
        return;
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "vxm fuzz: cannot write %s\n", path);
        abort();
    }
}

static inline int fuzz_is_gzip(const uint8_t *data, size_t size)
{
    return size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

static inline vxm_context *fuzz_context(void)
{
    vxm_context *ctx = vxm_context_create();
    if (!ctx)
        abort();
    vxm_context_set_threads(ctx, 1);
    return ctx;
}

/* VXM_FUZZ_VERBOSE=1: says what each input gave (to check that the seeds are read as valid files). */
static inline void fuzz_verbose(const vxm_context *ctx, vxm_status st)
{
    if (getenv("VXM_FUZZ_VERBOSE"))
        printf("fuzz: %s %s\n", st == VXM_OK ? "ok" : "error:", st == VXM_OK ? "" : vxm_context_error(ctx));
}

/* Reads a volume; a successful read must give a consistent volume. */
static inline void fuzz_read_volume(const char *path, const char *key)
{
    vxm_context *ctx = fuzz_context();
    vxm_volume *v = NULL;
    vxm_status st = vxm_volume_read(ctx, path, key, &v);
    if (st == VXM_OK) {
        if (!v || !v->data || v->channels < 1 || v->shape[0] < 1 || v->shape[1] < 1 || v->shape[2] < 1)
            abort();
        volatile float sink = 0;
        size_t n = vxm_volume_numel(v);
        for (size_t i = 0; i < n; i += 997)
            sink += v->data[i]; /* ASan checks that the whole array is really there */
        sink += v->data[n - 1];
        (void)sink;
    } else if (v || !vxm_context_error(ctx)[0]) {
        abort(); /* a failure must leave no volume and must say why */
    }
    fuzz_verbose(ctx, st);
    vxm_volume_free(v);
    vxm_context_free(ctx);
    unlink(path);
}

/* Reads the input with extension `ext` (`gz_ext` when it is a gzip stream) and, when it is not a gzip stream,
 * once more gzip-compressed by the harness as `gz_ext`: the incremental gzip path then sees every header the
 * plain path sees (a mutated deflate stream rarely decodes to a header). */
static inline void fuzz_volume_plain_and_gz(const uint8_t *data, size_t size, const char *ext, const char *gz_ext)
{
    char path[128];
    int gz = fuzz_is_gzip(data, size);
    fuzz_write(gz ? gz_ext : ext, data, size, 0, path, sizeof path);
    fuzz_read_volume(path, NULL);
    if (!gz) {
        fuzz_write(gz_ext, data, size, 1, path, sizeof path);
        fuzz_read_volume(path, NULL);
    }
}

/* Every target's LLVMFuzzerInitialize. */
#define FUZZ_INITIALIZE                                                                                          \
    int LLVMFuzzerInitialize(int *argc, char ***argv)                                                            \
    {                                                                                                            \
        (void)argc;                                                                                              \
        (void)argv;                                                                                              \
        fuzz_init();                                                                                             \
        return 0;                                                                                                \
    }

#endif
