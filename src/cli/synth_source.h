/* Internal to the vxm tool: where SynthMorph's training pairs come from (`vxm synth`, `vxm train --synthmorph`):
 * label maps from files (--label-maps LIST or --labels-in SEG) or random shapes (--shapes --inshape ...), the
 * synthesis options, and the draw of one synthetic (image, label map) on a device (training doc §6.2-6.3). */
#ifndef VXM_CLI_SYNTH_SOURCE_H
#define VXM_CLI_SYNTH_SOURCE_H

#include "cli/cli.h"
#include "synth/synth.h"

#define SYNTH_MAX_LABELS 4096

typedef struct synth_spec {
    vxm_synth_options syn;
    vxm_shapes_options shp;
    int shapes;              /* --shapes */
    int ndim, shape[3];      /* --inshape (shapes) */
    const char *label_maps;  /* --label-maps LIST (one label map per line) */
    const char *labels_in;   /* --labels-in SEG (one map) */
    const char *out_labels;  /* --out-labels L: the labels one-hot encoded (others -> background) */
} synth_spec;

void synth_spec_default(synth_spec *s);
/* The synthesis options (--vel-std, --vel-res ..., --blur-std, --bias-std, --bias-res ..., --gamma, --modulate,
 * --shapes, --inshape, --nb-labels, --shapes-res, --shapes-warp-std, --label-maps, --labels-in; the caller sets
 * out_labels).  1 consumed, 0 not one of them, -1
 * bad value (message printed). */
int synth_option(cli_args *a, synth_spec *s);
/* One line per option for usage texts. */
extern const char synth_options_usage[];

typedef struct synth_source {
    synth_spec spec;
    int ndim, shape[3];
    int nmaps;
    float **index;       /* per map: input-label indices (host), NULL for shapes */
    vxm_volume *like;    /* the first label map (header for outputs), NULL for shapes */
    int nin, in_labels[SYNTH_MAX_LABELS]; /* sorted input labels (shapes: 0..nlab-1) */
    int nout, out_labels[SYNTH_MAX_LABELS]; /* one-hot channels: sorted output label values */
    int lut[SYNTH_MAX_LABELS];  /* input index -> one-hot channel or -1 */
} synth_source;

/* Loads and checks the maps (one shape, integer labels, even sizes) or sets up shapes.  0, or 1 after one error
 * line. */
int synth_source_open(vxm_context *ctx, const synth_spec *spec, synth_source *s);
void synth_source_close(synth_source *s);

/* Synthesises one sample on `be`: from map `map` (ignored for shapes, which draw a new map from `stream`) flipped
 * along the image axes with flip[d] != 0 (NULL: none).  Host outputs (any may be NULL): image (shape x nchan),
 * onehot (shape x nout), labels (shape, the output label values, 0 elsewhere).  VXM_OK or an error in ctx. */
vxm_status synth_source_draw(synth_source *s, vxm_backend *be, int map, const int *flip, unsigned long long seed,
                             unsigned long long stream, unsigned long long step_stream, float *image, float *onehot,
                             float *labels);
/* The same into device tensors of `be` the caller allocated and keeps (vxm train --synthmorph: the trainer uses
 * them as graph inputs without a round trip through the host): image (shape x nchan), onehot (shape x nout). */
vxm_status synth_source_draw_device(synth_source *s, vxm_backend *be, int map, const int *flip,
                                    unsigned long long seed, unsigned long long stream,
                                    unsigned long long step_stream, vxm_tensor *image, vxm_tensor *onehot);

#endif
