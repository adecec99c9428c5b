/* Internal to `vxm train`: D/loss.png from D/log.csv (--plot D, --plot-every N). */
#ifndef VXM_CLI_TRAIN_PLOT_H
#define VXM_CLI_TRAIN_PLOT_H

#include "vxm.h"

/* Draws every loss column of DIR/log.csv (the weighted terms and the total) against the step, a log-scale y
 * axis when the values span more than two decades.  0, or 1 after a one-line error. */
int train_plot(vxm_context *ctx, const char *dir);

#endif
