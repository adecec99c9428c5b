/* Minimal test protocol shared by every test program: each check prints one line
 *   PASS <name>           FAIL <name>: <why>           SKIP <name>: <why>
 * and tests/run_tests.sh counts them into the final "N passed, N failed" line.  A program exits non-zero
 * when any of its checks failed. */
#ifndef VXM_TEST_UTIL_H
#define VXM_TEST_UTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int tu_failed_count;

static inline void tu_report(int ok, const char *name, const char *fmt, ...)
{
    if (ok) {
        printf("PASS %s\n", name);
    } else {
        char why[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        printf("FAIL %s: %s\n", name, why);
        tu_failed_count++;
    }
    fflush(stdout);
}

static inline void tu_skip(const char *name, const char *why)
{
    printf("SKIP %s: %s\n", name, why);
    fflush(stdout);
}

static inline int tu_exit_code(void)
{
    return tu_failed_count ? 1 : 0;
}

/* ../shared relative to the repository root (tests run from there); VXM_SHARED overrides. */
static inline const char *tu_shared_dir(void)
{
    const char *e = getenv("VXM_SHARED");
    return (e && *e) ? e : "../shared";
}

static inline int tu_have_shared(void)
{
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/data/pairs/fixed.nii.gz", tu_shared_dir());
    return stat(p, &st) == 0;
}

static inline const char *tu_shared_path(char *buf, size_t n, const char *rel)
{
    snprintf(buf, n, "%s/%s", tu_shared_dir(), rel);
    return buf;
}

static inline double tu_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d)
            m = (d != d) ? INFINITY : d;
    }
    return m;
}

/* Normalised MSE as in ggml's test-backend-ops: sum (a-b)^2 / sum b^2. */
static inline double tu_nmse(const float *a, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    if (num != num)
        return INFINITY;
    return den > 0 ? num / den : num;
}

/* Fixed-seed test data: splitmix64, and a uniform double in [lo, hi) from it. */
static inline unsigned long long tu_splitmix64(unsigned long long *s)
{
    unsigned long long z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline double tu_urand(unsigned long long *s, double lo, double hi)
{
    return lo + (hi - lo) * (double)(tu_splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
