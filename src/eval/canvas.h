/* Internal: an RGB canvas for PNG figures (canvas.c), shared by the QC picture (qc_png.c) and `vxm train`'s loss
 * plot. */
#ifndef VXM_EVAL_CANVAS_H
#define VXM_EVAL_CANVAS_H

#include <stddef.h>

#include "core/context.h"

typedef struct vxm_canvas {
    unsigned char *px; /* RGB, row-major */
    int w, h;
} vxm_canvas;

typedef struct vxm_rect {
    int x0, y0, x1, y1; /* inclusive-exclusive */
} vxm_rect;

static inline void vxm_canvas_put(const vxm_canvas *c, const vxm_rect *clip, int x, int y,
                                  const unsigned char rgb[3])
{
    if (x < clip->x0 || y < clip->y0 || x >= clip->x1 || y >= clip->y1)
        return;
    unsigned char *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = rgb[0];
    p[1] = rgb[1];
    p[2] = rgb[2];
}

/* Text in the 5x7 font scaled by ts (letters upper-cased; unknown characters blank); 6*ts pixels per
 * character. */
int vxm_canvas_text_width(const char *s, int ts);
void vxm_canvas_text(const vxm_canvas *c, const vxm_rect *clip, int x, int y, int ts, const char *s,
                     const unsigned char rgb[3]);
void vxm_canvas_line(const vxm_canvas *c, const vxm_rect *clip, double x0, double y0, double x1, double y1,
                     const unsigned char rgb[3]);
/* Writes the canvas as an 8-bit RGB PNG (temporary file + rename; errors name `path`). */
vxm_status vxm_canvas_write_png(vxm_context *ctx, const char *path, const vxm_canvas *c);

#endif
