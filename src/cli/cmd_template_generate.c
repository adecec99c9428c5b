/* vxm template-generate: the template a conditional template model (ConditionalTemplateCreation, training doc
 * §4.2; `vxm template --pheno`) generates for given attributes: atlas_input + generator(attributes), the
 * generator part of the model alone (train/template_cond.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/pheno_csv.h"
#include "train/template_cond.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: vxm template-generate --model D/NNNN.h5 --attributes \"a,b,...\" --out T [options]\n\n"
               "Writes the template a conditional template model (vxm template --pheno; VoxelMorph's\n"
               "ConditionalTemplateCreation) generates for the given attributes: the atlas input plus the\n"
               "generator's image.\n\n"
               "  --model F          a checkpoint of 'vxm template --pheno' (or a ConditionalTemplateCreation .h5)\n"
               "  --attributes LIST  one number per attribute, comma-separated, in the CSV's column order\n"
               "  --out T            output volume (.nii.gz, .nii, .mgz, .npz, ...)\n"
               "  --atlas-input A    the atlas input of the training (default: atlas_input.nii.gz next to the model)\n"
               "  --like IMG         header (geometry) for the output (default: the atlas input's)\n"
               "  --device SPEC, --gpu N, --threads N\n");
}

typedef struct gen_cli {
    const char *model, *attributes, *out, *atlas_input, *like;
    cli_device_opts dev;
} gen_cli;

/* 0: run; 1: exit 0 (help); 2: usage error. */
static int parse(int argc, char **argv, gen_cli *o)
{
    memset(o, 0, sizeof *o);
    const cli_string_opt strs[] = {{"--model", &o->model},
                                   {"--attributes", &o->attributes},
                                   {"--out", &o->out},
                                   {"--atlas-input", &o->atlas_input},
                                   {"--like", &o->like}};
    cli_args a;
    cli_args_init(&a, argc, argv);
    int r;
    while ((r = cli_next_option(&a, &o->dev, strs, (int)(sizeof strs / sizeof strs[0]), usage)) == 1)
        return cli_usage_error("template-generate: unknown option %s (see vxm template-generate --help)", a.name);
    if (r == CLI_HELP)
        return 1;
    if (r < 0)
        return 2;
    if (!o->model || !o->attributes || !o->out)
        return cli_usage_error("template-generate: --model, --attributes and --out are required");
    return 0;
}

/* The default atlas input: atlas_input.nii.gz in the model's directory (malloc'd). */
static char *default_atlas_input(const char *model)
{
    const char *slash = strrchr(model, '/');
    size_t dir = slash ? (size_t)(slash - model) + 1 : 0;
    char *p = malloc(dir + sizeof "atlas_input.nii.gz");
    if (p) {
        memcpy(p, model, dir);
        strcpy(p + dir, "atlas_input.nii.gz");
    }
    return p;
}

static int same_grid(const vxm_volume *v, const vxm_cond_arch *a)
{
    return v->ndim == a->ndim && !memcmp(v->shape, a->shape, sizeof a->shape) && v->channels == 1;
}

static int run(const gen_cli *o)
{
    vxm_context *ctx = vxm_context_create();
    vxm_cond_template *m = NULL;
    vxm_backend *be = NULL;
    vxm_volume *atlas = NULL, *like = NULL, *out = NULL;
    char *apath = o->atlas_input ? strdup(o->atlas_input) : default_atlas_input(o->model);
    float attrs[1024];
    int rc = 1;
    if (!ctx || !apath) {
        fprintf(stderr, "vxm: out of memory\n");
        goto done;
    }
    if (vxm_cond_template_load(ctx, o->model, &m)) {
        rc = cli_fail(ctx);
        goto done;
    }
    const vxm_cond_arch *a = vxm_cond_template_arch(m);
    int n = pheno_parse_list(o->attributes, attrs, 1024);
    if (n < 0) {
        rc = cli_usage_error("--attributes: '%s' is not a list of numbers", o->attributes);
        goto done;
    }
    if (n != a->npheno) {
        fprintf(stderr, "vxm: %s: the model takes %d attributes, --attributes gives %d\n", o->model, a->npheno, n);
        goto done;
    }
    if (vxm_volume_read(ctx, apath, NULL, &atlas) || (o->like && vxm_volume_read(ctx, o->like, NULL, &like))) {
        rc = cli_fail(ctx);
        goto done;
    }
    if (!same_grid(atlas, a)) {
        fprintf(stderr, "vxm: %s: the atlas input must have the model's shape (%dx%dx%d) and one channel\n", apath,
                a->shape[0], a->shape[1], a->shape[2]);
        goto done;
    }
    if (like && (like->ndim != a->ndim || memcmp(like->shape, a->shape, sizeof a->shape))) {
        fprintf(stderr, "vxm: %s: --like must have the model's shape (%dx%dx%d)\n", o->like, a->shape[0],
                a->shape[1], a->shape[2]);
        goto done;
    }
    if (!(out = vxm_volume_new(a->ndim, a->shape, 1))) {
        fprintf(stderr, "vxm: out of memory\n");
        goto done;
    }
    if (cli_open_backend(ctx, &o->dev, &be) || vxm_cond_template_generate(be, m, attrs, atlas->data, out->data) ||
        vxm_volume_write(ctx, o->out, out, like ? like : atlas)) {
        rc = cli_fail(ctx);
        goto done;
    }
    printf("wrote %s\n", o->out);
    rc = 0;
done:
    vxm_volume_free(out);
    vxm_volume_free(like);
    vxm_volume_free(atlas);
    vxm_backend_close(be);
    vxm_cond_template_free(m);
    free(apath);
    vxm_context_free(ctx);
    return rc;
}

int cmd_template_generate(int argc, char **argv)
{
    gen_cli o;
    int rc = parse(argc, argv, &o);
    return rc ? (rc == 1 ? 0 : rc) : run(&o);
}
