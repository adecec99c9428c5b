/* Internal to the vxm command-line tool: shared option parsing and error reporting. */
#ifndef VXM_CLI_H
#define VXM_CLI_H

#include <stdio.h>

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
/* A number in [lo, hi] (finite); -1 after a usage message otherwise. */
int cli_parse_double(const char *opt, const char *s, double lo, double hi, double *out);
int cli_parse_u64(const char *opt, const char *s, unsigned long long *out);
/* "--help" or "-h". */
int cli_is_help(const cli_args *a);
/* Several values for one option ("--scans A B C", "--enc 16 32 32"): the '=' value and every following
 * argument up to the next "--" option, at most max.  Returns how many (0: message printed), -1 when more
 * than max (message printed). */
int cli_values(cli_args *a, const char **out, int max);

/* String-valued options of a command, each with where its value goes. */
typedef struct cli_string_opt {
    const char *name;
    const char **target;
} cli_string_opt;

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
/* The option loop's shared part: the device options (when dev != NULL) and the n string options of `opts`.
 * 1: consumed, 0: none of these, -1: missing or bad value (message printed; exit with 2). */
int cli_common_option(cli_args *a, cli_device_opts *dev, const cli_string_opt *opts, int n);
/* The option loop: advances to the next option that is not a shared one (cli_common_option) and not --help
 * (usage(stdout) printed).  1: an option for the caller in a->name; 0: the end; CLI_HELP after --help (exit
 * 0); -1 after a bad value (message printed; exit 2). */
#define CLI_HELP (-2)
int cli_next_option(cli_args *a, cli_device_opts *dev, const cli_string_opt *opts, int n, void (*usage)(FILE *));
/* Monotonic wall-clock seconds. */
double cli_now_seconds(void);

/* ---- list files (cli_lists.c): "N names per line" -------------------------------------------------- */
#define CLI_LIST_MAX_NAMES 8
typedef struct cli_list_format {
    int min_names, max_names; /* names per line; max_names <= CLI_LIST_MAX_NAMES */
    const char *expected;     /* for messages: "two names (moving fixed)" */
    const char *items;        /* for messages: "pairs" -> "no pairs in the list" */
} cli_list_format;
typedef struct cli_list {
    char **names; /* rows x width, row-major; NULL where an optional name is absent */
    int *lineno;  /* the line of each row */
    int rows, width;
} cli_list;
/* Reads a list: min..max whitespace-separated names per line; blank lines and lines whose first name starts
 * with '#' are skipped.  Errors print one line ("vxm: LIST: line 3: expected two names (moving fixed),
 * found 1", "vxm: LIST: no pairs in the list") and return 1 with the list empty. */
int cli_list_read(const char *path, const cli_list_format *fmt, cli_list *l);
void cli_list_free(cli_list *l);
static inline const char *cli_list_name(const cli_list *l, int row, int col)
{
    return l->names[(size_t)row * (size_t)l->width + (size_t)col];
}
/* prefix + name + suffix (NULL: ""), malloc'ed; NULL after printing "out of memory". */
char *cli_affix(const char *prefix, const char *name, const char *suffix);
/* Applies --img-prefix/--img-suffix to every name of the list; 1 on out of memory (message printed). */
int cli_list_affix(cli_list *l, const char *prefix, const char *suffix);

/* --labels L (npz array 'labels', or .npy): the values in file order, without 0 and without repeats; at most max.
 * 0, or 1 after one error line. */
int cli_read_labels(vxm_context *ctx, const char *path, int *labels, int max, int *n);

int cmd_register(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_warp(int argc, char **argv);
int cmd_dice(int argc, char **argv);
int cmd_test(int argc, char **argv); /* cmd_test.c: evaluate a model on pairs (VoxelMorph test.py) */
int cmd_qc(int argc, char **argv);   /* cmd_qc.c: quality-control PNG */
int cmd_train(int argc, char **argv); /* cmd_train.c: train a VxmDense model (VoxelMorph train.py) */
int cmd_refine(int argc, char **argv); /* cmd_refine.c: instance-specific optimisation (train_instance.py) */
int cmd_synth(int argc, char **argv);  /* cmd_synth.c: one SynthMorph image (labels_to_image) */
int cmd_template(int argc, char **argv); /* cmd_template.c: deformable template (train_template.py) */
int cmd_template_generate(int argc, char **argv);
int cmd_tune(int argc, char **argv); /* cmd_tune.c: search the OpenCL convolution tiles of a device */ /* cmd_template_generate.c: conditional template for attributes */

/* ---- refinement (cmd_refine.c), shared with vxm register --refine ------------------------------------ */
struct vxm_instance_options;
/* Instance refinement of one pair: from model m's pre-integration field (a legacy Keras-graph model: from zero,
 * with a note), or with m == NULL from the options' start (random, as train_instance.py).  Checks the pair (one
 * line naming mpath / fpath), prints the loss before / after on stderr.  *moved (and *warp when warp != NULL)
 * receive new volumes; 0 on success, else 1 after one error line. */
int cli_refine(vxm_context *ctx, vxm_backend *be, const vxm_model *m, const vxm_volume *mov, const vxm_volume *fix,
               const char *mpath, const char *fpath, const struct vxm_instance_options *opt, vxm_volume **moved,
               vxm_volume **warp);
/* Option names {steps, lr, lambda, image loss} parsed into *o: 1 consumed, 0 not one of them, -1 bad value
 * (message printed). */
int cli_refine_option(cli_args *a, const char *const names[4], struct vxm_instance_options *o);
/* Floats of the refinement field (half-resolution velocity) for images like v. */
size_t cli_refine_field_numel(const vxm_volume *v, const struct vxm_instance_options *o);

#endif
