/* vxm tune: search the tiles of the OpenCL convolution kernels on one device and store the fastest in the device's
 * tuned file (issue 10; backend.h vxm_opencl_tune), as CLBlast's tuner does.  Later runs on that device read it. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: vxm tune --device opencl:P:D [--quick] [--reps N] [--max-candidates N] [--dry-run | --show]\n\n"
               "Times every candidate tile of the tiled convolution kernels (forward / data gradient, and filter\n"
               "gradient) for 16-, 32- and 64-channel layers of the published model on the device, keeps only tiles\n"
               "whose results equal the direct kernel's bit for bit, and writes the fastest per layer class to\n"
               "$XDG_CACHE_HOME/vxmcl/tune-<device>.json (VXM_TUNE_FILE names another file; =0 ignores tuned files).\n"
               "  --quick     fewer candidates on 32^3 layers (about a minute on a CPU device)\n"
               "  --reps N    timed runs per candidate, the fastest counts (default 3)\n"
               "  --max-candidates N  time at most N candidate tiles per kernel and layer class\n"
               "  --dry-run   print the table, write nothing\n"
               "  --show      print the tiles the device uses now and where they come from; tune nothing\n");
}

static void print_line(void *user, const char *line)
{
    (void)user;
    printf("%s\n", line);
    fflush(stdout);
}

int cmd_tune(int argc, char **argv)
{
    cli_args a;
    cli_device_opts dev = {0};
    vxm_tune_options o = {0};
    int show = 0;
    cli_args_init(&a, argc, argv);
    int r;
    while ((r = cli_next_option(&a, &dev, NULL, 0, usage)) == 1) {
        if (cli_is(&a, "--quick"))
            o.quick = 1;
        else if (cli_is(&a, "--dry-run"))
            o.dry_run = 1;
        else if (cli_is(&a, "--show"))
            show = 1;
        else if (cli_is(&a, "--max-candidates")) {
            const char *v = cli_value(&a);
            if (!v || cli_parse_int("--max-candidates", v, 1, 1000, &o.max_candidates))
                return 2;
        }
        else if (cli_is(&a, "--reps")) {
            const char *v = cli_value(&a);
            if (!v || cli_parse_int("--reps", v, 1, 100, &o.reps))
                return 2;
        } else
            return cli_usage_error("tune: unknown option '%s'", a.name);
    }
    if (r == CLI_HELP)
        return 0;
    if (r < 0)
        return 2;
    if (!dev.device || strncmp(dev.device, "opencl:", 7) != 0)
        return cli_usage_error("tune: --device opencl:P:D is required (see vxm devices)");
    vxm_context *ctx = vxm_context_create();
    vxm_backend *be = NULL;
    int rc = 0;
    char path[4096] = "";
    if (cli_open_backend(ctx, &dev, &be)) {
        rc = cli_fail(ctx);
    } else if (show) {
        char line[512];
        vxm_opencl_tile_summary(be, line, sizeof line);
        printf("%s: %s\n", dev.device, line);
    } else if (vxm_opencl_tune(be, &o, print_line, NULL, path, sizeof path)) {
        rc = cli_fail(ctx);
    } else {
        printf("tuned tiles: %s\n", path);
    }
    vxm_backend_close(be);
    vxm_context_free(ctx);
    return rc;
}
