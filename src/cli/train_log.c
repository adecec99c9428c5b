/* `vxm train`'s reporting: D/log.csv and the terminal lines (train_log.h).  The CSV is plain text a person can
 * open in a spreadsheet or pandas; `vxm train --plot D` (train_plot.c) draws it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/train_log.h"
#include "core/tempfile.h"

struct train_log {
    FILE *f;
    char *path;
    int failed;
};

/* "epoch,step,mse,grad,total,seconds" */
static void header(const vxm_train_losses *names, char *buf, size_t n)
{
    snprintf(buf, n, "epoch,step");
    for (int i = 0; i < names->n; i++)
        snprintf(buf + strlen(buf), n - strlen(buf), ",%s", names->name[i]);
    snprintf(buf + strlen(buf), n - strlen(buf), ",total,seconds");
}

/* --resume: the old log's rows up to keep_step (same columns), written to `out`.  Returns the rows kept, -1
 * when the old log is absent or has other columns (a new one starts). */
static long copy_rows(const char *path, const char *want, long keep_step, FILE *out)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return -1;
    char line[4096];
    long kept = -1;
    if (fgets(line, sizeof line, in) && !strncmp(line, want, strlen(want)) && line[strlen(want)] == '\n') {
        fputs(line, out);
        kept = 0;
        while (fgets(line, sizeof line, in)) {
            long epoch, step;
            if (sscanf(line, "%ld,%ld,", &epoch, &step) == 2 && step <= keep_step && strchr(line, '\n')) {
                fputs(line, out);
                kept++;
            }
        }
    }
    fclose(in);
    return kept;
}

int train_log_open(const char *dir, const vxm_train_losses *names, long keep_step, train_log **out)
{
    *out = NULL;
    train_log *l = calloc(1, sizeof *l);
    char want[512];
    header(names, want, sizeof want);
    if (!l || !(l->path = cli_affix(dir, "/log.csv", NULL))) {
        free(l);
        fprintf(stderr, "vxm: out of memory\n");
        return 1;
    }
    /* rewrite through a temporary file: an interrupted start leaves the old log intact */
    char *tmp = cli_affix(l->path, ".tmp", NULL);
    FILE *f = tmp ? fopen(tmp, "w") : NULL;
    int ok = f != NULL;
    if (ok) {
        long kept = keep_step >= 0 ? copy_rows(l->path, want, keep_step, f) : -1;
        if (kept < 0)
            fprintf(f, "%s\n", want);
        if (keep_step >= 0 && kept >= 0)
            printf("log %s: continuing after %ld row%s\n", l->path, kept, kept == 1 ? "" : "s");
        ok = !ferror(f);
        ok = !fclose(f) && ok && vxm_temp_commit(NULL, tmp, l->path, VXM_OK) == VXM_OK; /* fsync + rename */
    }
    if (ok)
        ok = (l->f = fopen(l->path, "a")) != NULL;
    if (!ok) {
        fprintf(stderr, "vxm: %s: %s\n", l->path, strerror(errno));
        if (tmp)
            remove(tmp);
        free(tmp);
        train_log_close(l);
        return 1;
    }
    free(tmp);
    *out = l;
    return 0;
}

void train_log_row(train_log *l, int epoch, long step, const vxm_train_losses *L, double seconds)
{
    if (!l || l->failed)
        return;
    fprintf(l->f, "%d,%ld", epoch, step);
    for (int i = 0; i < L->n; i++)
        fprintf(l->f, ",%.9g", L->value[i]);
    fprintf(l->f, ",%.9g,%.4f\n", L->total, seconds);
    if (fflush(l->f) || ferror(l->f)) {
        train_live_clear();
        fprintf(stderr, "vxm: warning: %s: %s; the log stops here, training goes on\n", l->path, strerror(errno));
        l->failed = 1;
    }
}

void train_log_close(train_log *l)
{
    if (!l)
        return;
    if (l->f)
        fclose(l->f);
    free(l->path);
    free(l);
}

void train_format_eta(double s, char *buf, size_t n)
{
    long t = (long)(s + 0.5);
    if (t < 60)
        snprintf(buf, n, "%lds", t);
    else if (t < 3600)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
}

void train_epoch_line(int epoch, int epochs, const vxm_train_losses *sum, int steps, double s_per_step,
                      double eta)
{
    char e[32];
    train_format_eta(eta, e, sizeof e);
    fprintf(stderr, "epoch %d/%d  loss %.4g (", epoch, epochs, sum->total / steps);
    for (int i = 0; i < sum->n; i++)
        fprintf(stderr, "%s%s %.3g", i ? ", " : "", sum->name[i], sum->value[i] / steps);
    fprintf(stderr, ")  %.3g s/step  ETA %s\n", s_per_step, e);
}

void train_live_line(int epoch, int epochs, int step, int steps, const vxm_train_losses *L, double s_per_step,
                     double eta, const char *device)
{
    char e[32];
    train_format_eta(eta, e, sizeof e);
    fprintf(stderr, "\r\033[Kepoch %d/%d step %d/%d  loss %.4g (", epoch, epochs, step, steps, L->total);
    for (int i = 0; i < L->n; i++)
        fprintf(stderr, "%s%s %.3g", i ? ", " : "", L->name[i], L->value[i]);
    fprintf(stderr, ")  %.3g s/step  ETA %s  %s", s_per_step, e, device);
    fflush(stderr);
}

void train_live_clear(void)
{
    /* the live line is drawn exactly when stderr is a terminal; "\r\033[K" erases it there */
    if (isatty(STDERR_FILENO))
        fputs("\r\033[K", stderr);
}
