/* Internal to the vxm command-line tool: shared option parsing and error reporting. */
#ifndef VXM_CLI_H
#define VXM_CLI_H

#include "vxm.h"

/* Prints "vxm: <subject>: <problem>" from the context's last error; returns the exit status (1). */
int cli_fail(vxm_context *ctx);
/* Prints "vxm: <fmt...>" and returns 2 (usage errors). */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Option scanner over argv: accepts "--name value" and "--name=value". */
typedef struct cli_args {
    int argc, i;
    char **argv;
    const char *name;  /* current option, without the value part */
    const char *value; /* value given with '=' or NULL */
    char name_buf[128];
} cli_args;

void cli_args_init(cli_args *a, int argc, char **argv);
/* Advances to the next option; 0 at the end. */
int cli_next(cli_args *a);
int cli_is(const cli_args *a, const char *opt);
/* Value of the current option (from '=' or the next argument); NULL with an error printed when missing. */
const char *cli_value(cli_args *a);
int cli_parse_int(const char *opt, const char *s, int lo, int hi, int *out);

/* Common device options: --device SPEC, --gpu N, --threads N.  Returns 1 when the option was consumed,
 * 0 when it is not a device option, -1 on a bad value. */
typedef struct cli_device_opts {
    const char *device;
    char gpu_spec[32];
    int threads;
} cli_device_opts;
int cli_device_option(cli_args *a, cli_device_opts *d);
/* Opens the backend the options ask for (default "auto"). */
vxm_status cli_open_backend(vxm_context *ctx, const cli_device_opts *d, vxm_backend **be);

int cmd_register(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_warp(int argc, char **argv);
int cmd_dice(int argc, char **argv);
int cmd_test(int argc, char **argv); /* cmd_test.c: evaluate a model on pairs (VoxelMorph test.py) */
int cmd_qc(int argc, char **argv);   /* cmd_qc.c: quality-control PNG */

#endif
