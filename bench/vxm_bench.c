/* vxm_bench: per-layer and per-op timing of a registration on one device, with the outputs checked against
 * golden files in the same run, plus whole-process wall time and peak RSS of `vxm register`.
 *
 *   vxm_bench --model M --moving A --fixed B --device SPEC [--runs N] [--threads T]
 *             [--golden-warp W --golden-moved D] [--vxm ./vxm] [--peak GFLOPS]
 *
 * Compute time = median over N unprofiled runs after one warm-up; the per-layer table is the median over N
 * profiled runs (each node waits for the device, so the per-layer sum is slightly above the compute time).  The
 * graph is fused as `vxm register` runs it (graph/fuse.h; VXM_FUSE=0 times the unfused graph). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "graph/fuse.h"
#include "graph/graph.h"
#include "model/model.h"

#define MAX_RUNS 15

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* "X GFLOP/s", or "X TFLOP/s" from 1000 GFLOP/s on (GPU rates). */
static const char *rate(char *buf, size_t n, double gflops)
{
    if (gflops >= 1000)
        snprintf(buf, n, "%.2f TFLOP/s", gflops / 1000);
    else
        snprintf(buf, n, "%.1f GFLOP/s", gflops);
    return buf;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double node_flops(const vxm_graph *g, const vxm_node *n)
{
    return vxm_node_conv_flops(g, n);
}

typedef struct opts {
    const char *model, *moving, *fixed, *device, *gwarp, *gmoved, *vxm;
    int runs, threads;
    double peak;
} opts;

/* One run of the whole graph; when `prof` is non-NULL it receives per-node seconds. */
static int run_once(vxm_context *ctx, vxm_backend *be, const vxm_graph *g, const vxm_volume *mov,
                    const vxm_volume *fix, double *prof, double *total, float *warp, float *moved)
{
    vxm_exec *ex = NULL;
    double t0 = now();
    vxm_status st = vxm_exec_begin(be, g, mov->data, fix->data, 1, 0, &ex);
    if (!st && prof)
        st = vxm_exec_set_profiling(ex, 1);
    if (!st)
        st = vxm_exec_run_all(ex);
    *total = now() - t0;
    if (!st && prof)
        for (int i = 0; i < g->n; i++)
            prof[i] = vxm_exec_node_seconds(ex, i);
    if (!st && warp)
        st = vxm_exec_read(ex, g->out_warp, warp);
    if (!st && moved)
        st = vxm_exec_read(ex, g->out_moved, moved);
    vxm_exec_end(ex);
    if (st)
        fprintf(stderr, "vxm_bench: %s\n", vxm_context_error(ctx));
    return st ? -1 : 0;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m))
            m = d;
    }
    return m;
}

/* Whole `vxm register` process: wall time and peak RSS of the child (wait4). */
static int process_run(const opts *o, double *wall, double *rss_mb)
{
    char threads[32];
    snprintf(threads, sizeof threads, "%d", o->threads);
    const char *outdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char moved[512], warp[512];
    snprintf(moved, sizeof moved, "%s/vxm_bench_moved_%d.nii.gz", outdir, (int)getpid());
    snprintf(warp, sizeof warp, "%s/vxm_bench_warp_%d.nii.gz", outdir, (int)getpid());
    double t0 = now();
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 1);
        execl(o->vxm, o->vxm, "register", "--model", o->model, "--moving", o->moving, "--fixed", o->fixed, "--moved",
              moved, "--warp", warp, "--device", o->device, "--threads", threads, (char *)NULL);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    *wall = now() - t0;
    *rss_mb = ru.ru_maxrss / 1024.0;
    unlink(moved);
    unlink(warp);
    return 0;
}

static int parse(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->runs = 3;
    o->threads = 2;
    o->device = "cpu";
    o->vxm = "./vxm";
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--model")) o->model = v;
        else if (!strcmp(k, "--moving")) o->moving = v;
        else if (!strcmp(k, "--fixed")) o->fixed = v;
        else if (!strcmp(k, "--device")) o->device = v;
        else if (!strcmp(k, "--golden-warp")) o->gwarp = v;
        else if (!strcmp(k, "--golden-moved")) o->gmoved = v;
        else if (!strcmp(k, "--vxm")) o->vxm = v;
        else if (!strcmp(k, "--runs")) o->runs = atoi(v);
        else if (!strcmp(k, "--threads")) o->threads = atoi(v);
        else if (!strcmp(k, "--peak")) o->peak = atof(v);
        else return -1;
    }
    if (o->runs < 1 || o->runs > MAX_RUNS)
        o->runs = 3;
    return (o->model && o->moving && o->fixed) ? 0 : -1;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o)) {
        fprintf(stderr, "usage: vxm_bench --model M --moving A --fixed B [--device D] [--runs N] [--threads T] "
                        "[--golden-warp W --golden-moved D] [--vxm ./vxm] [--peak GFLOPS]\n");
        return 2;
    }
    vxm_context *ctx = vxm_context_create();
    vxm_context_set_threads(ctx, o.threads);
    vxm_model *m = NULL;
    vxm_volume *mov = NULL, *fix = NULL, *gw = NULL, *gm = NULL;
    vxm_backend *be = NULL;
    vxm_graph *g = NULL;
    int rc = 1;
    if (vxm_model_load(ctx, o.model, &m) || vxm_volume_read(ctx, o.moving, NULL, &mov) ||
        vxm_volume_read(ctx, o.fixed, NULL, &fix) || (o.gwarp && vxm_volume_read(ctx, o.gwarp, NULL, &gw)) ||
        (o.gmoved && vxm_volume_read(ctx, o.gmoved, NULL, &gm)) || vxm_backend_open(ctx, o.device, &be) ||
        vxm_model_build_graph(ctx, m, mov->ndim, mov->shape, &g) || vxm_graph_fuse(ctx, &g)) {
        fprintf(stderr, "vxm_bench: %s\n", vxm_context_error(ctx));
        goto done;
    }
    size_t nw = (size_t)g->nodes[g->out_warp].shape[0] * g->nodes[g->out_warp].shape[1] *
                g->nodes[g->out_warp].shape[2] * g->nodes[g->out_warp].channels;
    float *warp = malloc(nw * sizeof(float)), *moved = malloc(vxm_volume_numel(fix) * sizeof(float));
    double *prof = calloc((size_t)g->n * MAX_RUNS, sizeof(double)), totals[MAX_RUNS], ptot[MAX_RUNS], tmp[MAX_RUNS];
    double dummy;
    /* warm-up (kernel compilation, first-touch of memory), then timed runs */
    if (run_once(ctx, be, g, mov, fix, NULL, &dummy, warp, moved))
        goto free_bufs;
    for (int r = 0; r < o.runs; r++)
        if (run_once(ctx, be, g, mov, fix, NULL, &totals[r], NULL, NULL) ||
            run_once(ctx, be, g, mov, fix, prof + (size_t)r * g->n, &ptot[r], NULL, NULL))
            goto free_bufs;
    double compute = median(totals, o.runs);

    printf("\n## %s — %s, %d thread(s), %dx%dx%d, median of %d runs after a warm-up\n\n", vxm_backend_describe(be),
           o.model, o.threads, mov->shape[0], mov->shape[1], mov->shape[2], o.runs);
    printf("| layer | op | output | ms | GFLOP | GFLOP/s | share |\n|---|---|---|---:|---:|---:|---:|\n");
    double layer_sum = 0, *med = calloc((size_t)g->n, sizeof(double));
    for (int i = 0; i < g->n; i++) {
        for (int r = 0; r < o.runs; r++)
            tmp[r] = prof[(size_t)r * g->n + i];
        med[i] = median(tmp, o.runs);
        layer_sum += med[i];
    }
    double conv_t = 0, conv_f = 0, big_t = 0, big_f = 0;
    for (int i = 0; i < g->n; i++) {
        const vxm_node *n = &g->nodes[i];
        double f = node_flops(g, n);
        if (n->op == VXM_OP_INPUT || n->op == VXM_OP_PARAM || n->op == VXM_OP_NOISE)
            continue;
        char rate[32] = "";
        if (f > 0)
            snprintf(rate, sizeof rate, "%.1f", f / med[i] / 1e9);
        printf("| %s | %s | %dx%dx%dx%d | %.2f | %.2f | %s | %.1f%% |\n", n->name, vxm_op_name(n->op), n->shape[0],
               n->shape[1], n->shape[2], n->channels, med[i] * 1e3, f / 1e9, rate, 100 * med[i] / layer_sum);
        if (f > 0) {
            conv_t += med[i];
            conv_f += f;
            if (f > 10e9) {
                big_t += med[i];
                big_f += f;
            }
        }
    }
    printf("\n| op kind | ms | share |\n|---|---:|---:|\n");
    for (int op = VXM_OP_INPUT; op < VXM_OP_COUNT; op++) { /* inference graphs: forward and fused ops */
        double t = 0;
        for (int i = 0; i < g->n; i++)
            if ((int)g->nodes[i].op == op)
                t += med[i];
        if (t > 0)
            printf("| %s | %.1f | %.1f%% |\n", vxm_op_name((vxm_op)op), t * 1e3, 100 * t / layer_sum);
    }
    /* four decimals: a GPU registers in ~0.01 s */
    printf("\ncompute (unprofiled, median): %.4f s; sum of per-layer times: %.4f s\n", compute, layer_sum);
    char r1[48], r2[48];
    printf("convolutions: %.1f GFLOP in %.4f s = %s", conv_f / 1e9, conv_t, rate(r1, sizeof r1, conv_f / conv_t / 1e9));
    if (big_t > 0)
        printf("; layers over 10 GFLOP: %s", rate(r1, sizeof r1, big_f / big_t / 1e9));
    if (o.peak > 0 && big_t > 0) /* --peak: bench.sh passes fma_peak's (CPU) or cl_peak's (OpenCL device) rate */
        printf(" = %.0f%% of the device's measured FP32 FMA peak (%s)", 100 * big_f / big_t / 1e9 / o.peak,
               rate(r2, sizeof r2, o.peak));
    printf("\n");
    if (!strncmp(o.device, "cpu", 3)) /* the rates above count the dense FLOPs of every layer */
        printf("(FLOPs as dense layers; the CPU backend computes one voxel per uniform background block and folds "
               "conv_upcat's upsampling into its weights, so a layer's rate can exceed the FMA peak: "
               "VXM_CPU_UNIFORM=0 VXM_CPU_FOLD=0 time the dense kernels alone)\n");
    if (gw)
        printf("check: warp max |diff| vs golden %.2e\n", max_abs_diff(warp, gw->data, nw));
    if (gm)
        printf("check: moved max |diff| vs golden %.2e\n", max_abs_diff(moved, gm->data, vxm_volume_numel(gm)));
    double walls[MAX_RUNS], rss[MAX_RUNS];
    int ok = 1;
    for (int r = 0; r < o.runs && ok; r++)
        ok = process_run(&o, &walls[r], &rss[r]) == 0;
    if (ok)
        printf("whole `vxm register` process (read .nii.gz, register, write .nii.gz): %.2f s wall, peak RSS %.0f MB\n",
               median(walls, o.runs), median(rss, o.runs));
    else
        printf("whole-process run of %s failed\n", o.vxm);
    free(med);
    rc = 0;
free_bufs:
    free(warp);
    free(moved);
    free(prof);
done:
    vxm_graph_free(g);
    vxm_backend_close(be);
    vxm_volume_free(mov);
    vxm_volume_free(fix);
    vxm_volume_free(gw);
    vxm_volume_free(gm);
    vxm_model_free(m);
    vxm_context_free(ctx);
    return rc;
}
