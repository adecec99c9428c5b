/* The loss plot of a training run: D/log.csv (train_log.c) drawn into D/loss.png.  One curve per column
 * between `step` and `seconds` (weighted terms, then the total, drawn last and in black); many steps per pixel
 * column are averaged, so a plot of a long run stays readable. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/train_plot.h"
#include "eval/canvas.h"

#define MAX_SERIES 8
#define W 800
#define H 480
#define LEFT 80
#define RIGHT 20
#define TOP 40
#define BOTTOM 40

typedef struct series_set {
    int n;                       /* series */
    char name[MAX_SERIES][32];
    long rows, cap;
    double *step, *val[MAX_SERIES];
} series_set;

static void set_free(series_set *s)
{
    free(s->step);
    for (int i = 0; i < MAX_SERIES; i++)
        free(s->val[i]);
}

/* Parses the CSV; 0, or 1 with a message in err. */
static int read_log(const char *path, series_set *s, char *err, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, n, "%s: %s", path, strerror(errno));
        return 1;
    }
    char line[4096];
    int rc = 1, ncol = 0;
    if (!fgets(line, sizeof line, f) || strncmp(line, "epoch,step,", 11)) {
        snprintf(err, n, "%s: not a vxm train log (expected the header epoch,step,...)", path);
        goto done;
    }
    line[strcspn(line, "\r\n")] = '\0';
    for (char *tok = strtok(line + 11, ","); tok; tok = strtok(NULL, ","), ncol++)
        if (ncol < MAX_SERIES)
            snprintf(s->name[ncol], sizeof s->name[ncol], "%s", tok);
    s->n = ncol - 1; /* the last column is seconds */
    if (s->n < 1 || s->n > MAX_SERIES) {
        snprintf(err, n, "%s: expected 1 to %d loss columns", path, MAX_SERIES);
        goto done;
    }
    while (fgets(line, sizeof line, f)) {
        double v[MAX_SERIES + 3];
        int k = 0;
        for (char *p = line, *e; k < s->n + 2; p = e + 1) {
            v[k++] = strtod(p, &e);
            if (e == p || (*e != ',' && k < s->n + 2))
                break;
        }
        if (k < s->n + 2)
            continue; /* a torn last line of an interrupted run */
        if (s->rows == s->cap) {
            long cap = s->cap ? 2 * s->cap : 1024;
            int bad = !(s->step = realloc(s->step, sizeof(double) * (size_t)cap));
            for (int i = 0; i < s->n && !bad; i++)
                bad = !(s->val[i] = realloc(s->val[i], sizeof(double) * (size_t)cap));
            if (bad) {
                snprintf(err, n, "%s: out of memory", path);
                goto done;
            }
            s->cap = cap;
        }
        s->step[s->rows] = v[1];
        for (int i = 0; i < s->n; i++)
            s->val[i][s->rows] = v[2 + i];
        s->rows++;
    }
    if (s->rows == 0)
        snprintf(err, n, "%s: no steps logged yet", path);
    else
        rc = 0;
done:
    fclose(f);
    return rc;
}

static const unsigned char colours[MAX_SERIES][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189}, {140, 86, 75}, {227, 119, 194},
    {127, 127, 127}};

/* The y axis: value -> pixel row. */
typedef struct yaxis {
    int logy;
    double lo, hi;
} yaxis;

static double ypix(const yaxis *a, double v)
{
    double t = a->logy ? (log10(v) - a->lo) / (a->hi - a->lo) : (v - a->lo) / (a->hi - a->lo);
    return TOP + (1.0 - t) * (H - TOP - BOTTOM);
}

static void axes(const vxm_canvas *c, const series_set *s, yaxis *a)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < s->n; i++)
        for (long r = 0; r < s->rows; r++)
            if (isfinite(s->val[i][r])) {
                lo = fmin(lo, s->val[i][r]);
                hi = fmax(hi, s->val[i][r]);
            }
    if (!(lo <= hi))
        lo = 0, hi = 1;
    a->logy = lo > 0 && hi / lo > 100;
    a->lo = a->logy ? floor(log10(lo)) : lo;
    a->hi = a->logy ? ceil(log10(hi)) : hi;
    if (a->hi <= a->lo)
        a->hi = a->lo + (a->logy ? 1 : (fabs(a->lo) > 0 ? fabs(a->lo) : 1));
    const unsigned char grey[3] = {200, 200, 200}, black[3] = {0, 0, 0};
    const vxm_rect all = {0, 0, W, H};
    int nt = a->logy ? (int)(a->hi - a->lo) : 4;
    for (int k = 0; k <= nt; k++) {
        double v = a->logy ? pow(10, a->lo + k) : a->lo + (a->hi - a->lo) * k / nt;
        double y = ypix(a, v);
        char lab[32];
        snprintf(lab, sizeof lab, "%.3g", v);
        vxm_canvas_line(c, &all, LEFT, y, W - RIGHT, y, grey);
        vxm_canvas_text(c, &all, LEFT - 6 - vxm_canvas_text_width(lab, 1), (int)y - 3, 1, lab, black);
    }
    vxm_canvas_line(c, &all, LEFT, TOP, LEFT, H - BOTTOM, black);
    vxm_canvas_line(c, &all, LEFT, H - BOTTOM, W - RIGHT, H - BOTTOM, black);
    char lab[64];
    snprintf(lab, sizeof lab, "step %.0f", s->step[0]);
    vxm_canvas_text(c, &all, LEFT, H - BOTTOM + 8, 1, lab, black);
    snprintf(lab, sizeof lab, "step %.0f", s->step[s->rows - 1]);
    vxm_canvas_text(c, &all, W - RIGHT - vxm_canvas_text_width(lab, 1), H - BOTTOM + 8, 1, lab, black);
    vxm_canvas_text(c, &all, LEFT, 8, 1, a->logy ? "loss per step (log scale)" : "loss per step", black);
}

/* One curve: the mean of the values in each pixel column, joined by lines. */
static void curve(const vxm_canvas *c, const series_set *s, const yaxis *a, int i, const unsigned char rgb[3])
{
    const vxm_rect plot = {LEFT + 1, TOP, W - RIGHT, H - BOTTOM};
    double x0 = s->step[0], x1 = s->step[s->rows - 1], px = -1, py = 0;
    int pw = W - LEFT - RIGHT;
    for (long r = 0; r < s->rows;) {
        int col = x1 > x0 ? (int)((s->step[r] - x0) / (x1 - x0) * (pw - 1)) : 0;
        double sum = 0;
        long cnt = 0;
        for (; r < s->rows && (x1 > x0 ? (int)((s->step[r] - x0) / (x1 - x0) * (pw - 1)) : 0) == col; r++)
            if (isfinite(s->val[i][r]) && (!a->logy || s->val[i][r] > 0)) {
                sum += a->logy ? log10(s->val[i][r]) : s->val[i][r];
                cnt++;
            }
        if (!cnt)
            continue;
        double m = sum / (double)cnt, x = LEFT + 1 + col, y = ypix(a, a->logy ? pow(10, m) : m);
        if (px >= 0)
            vxm_canvas_line(c, &plot, px, py, x, y, rgb);
        else
            vxm_canvas_put(c, &plot, (int)x, (int)y, rgb);
        px = x;
        py = y;
    }
    /* legend entry */
    const vxm_rect all = {0, 0, W, H};
    int lx = W - RIGHT - 110 * (s->n - i);
    vxm_canvas_line(c, &all, lx, 26, lx + 16, 26, rgb);
    vxm_canvas_text(c, &all, lx + 20, 23, 1, s->name[i], rgb);
}

int train_plot(vxm_context *ctx, const char *dir)
{
    char *log = cli_affix(dir, "/log.csv", NULL), *png = cli_affix(dir, "/loss.png", NULL);
    series_set s;
    memset(&s, 0, sizeof s);
    vxm_canvas c = {calloc((size_t)W * H * 3, 1), W, H};
    char err[600];
    int rc = 1;
    if (!log || !png || !c.px) {
        fprintf(stderr, "vxm: out of memory\n");
        goto done;
    }
    if (read_log(log, &s, err, sizeof err)) {
        fprintf(stderr, "vxm: %s\n", err);
        goto done;
    }
    memset(c.px, 255, (size_t)W * H * 3);
    yaxis a;
    axes(&c, &s, &a);
    const unsigned char black[3] = {0, 0, 0};
    for (int i = 0; i < s.n; i++) /* the total (last column) in black, over the terms */
        curve(&c, &s, &a, i, i == s.n - 1 ? black : colours[i % MAX_SERIES]);
    rc = vxm_canvas_write_png(ctx, png, &c) ? cli_fail(ctx) : 0;
done:
    set_free(&s);
    free(c.px);
    free(log);
    free(png);
    return rc;
}
