/* libFuzzer target: the Keras .h5 model reader (HDF5 attributes, the model_config JSON, layer_names /
 * weight_names, weight datasets) through vxm_model_load, then, for a model that loads, the graph built for the
 * smallest input it accepts (vxm_model_describe: the config and the weights' shapes checked against each other). */
#include "fuzz_common.h"
#include "model/model.h"

FUZZ_INITIALIZE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128];
    fuzz_write(".h5", data, size, 0, path, sizeof path);
    vxm_context *ctx = fuzz_context();
    vxm_model *m = NULL;
    vxm_status st = vxm_model_load(ctx, path, &m);
    if (st == VXM_OK) {
        int div = vxm_model_size_divisor(m), ndim = m->ndim, shape[3] = {1, 1, 1};
        if ((ndim == 2 || ndim == 3) && div >= 1 && div <= 32) {
            for (int d = 3 - ndim; d < 3; d++)
                shape[d] = div < 8 ? 8 : div;
            static char text[1 << 16];
            st = vxm_model_describe(ctx, m, ndim, shape, text, sizeof text);
        }
    } else if (m || !vxm_context_error(ctx)[0]) {
        abort();
    }
    fuzz_verbose(ctx, st);
    vxm_model_free(m);
    vxm_context_free(ctx);
    unlink(path);
    return 0;
}
