/* vxm: command-line front end. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f, "vxm %s - VoxelMorph registration on the CPU or any OpenCL device\n\n"
               "usage: vxm <command> [options]\n\n"
               "commands:\n"
               "  register   register a moving image to a fixed image with a VoxelMorph model\n"
               "  warp       apply a saved warp to an image or label map\n"
               "  dice       Dice overlap per label between two label maps\n"
               "  test       evaluate a model on image pairs: Dice of warped segmentations, det J, timing\n"
               "  train      train a VoxelMorph (VxmDense) model on volumes (as VoxelMorph's train.py)\n"
               "  refine     register one pair by optimising its velocity field directly (train_instance.py)\n"
               "  synth      draw a synthetic image from a label map or random shapes (SynthMorph)\n"
               "  template   build a deformable template from scans (as VoxelMorph's train_template.py)\n"
               "  template-generate  the template of a conditional template model (template --pheno) for\n"
               "             given attributes\n"               "  qc         quality-control PNG of a registration (slices, checkerboard, deformed grid)\n"
               "  devices    list the CPU backend and every OpenCL platform/device\n"
               "  tune       search the fastest convolution tiles of an OpenCL device (stored per device)\n"
               "  info       print a model's architecture, parameter count and FLOPs\n"
               "  help       this text; 'vxm <command> --help' for a command's options\n",
            VXM_VERSION_STRING);
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"register", cmd_register}, {"warp", cmd_warp}, {"dice", cmd_dice},       {"test", cmd_test},
    {"train", cmd_train},       {"qc", cmd_qc},     {"devices", cmd_devices}, {"info", cmd_info},
    {"refine", cmd_refine},
    {"synth", cmd_synth},
    {"template", cmd_template},
    {"template-generate", cmd_template_generate},
    {"tune", cmd_tune},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("vxm %s\n", VXM_VERSION_STRING);
        return 0;
    }
    fprintf(stderr, "vxm: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
