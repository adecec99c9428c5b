/* Measured FP32 FMA peak of this machine: independent vector FMA chains (enough to cover the FMA latency),
 * with 1 thread and with N threads.  Prints "threads GFLOP/s" lines; the benchmark reports the conv layers'
 * share of this number. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define VSET(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUM(a) _mm512_reduce_add_ps(a)
#elif defined(__FMA__)
typedef __m256 vec;
#define LANES 8
#define VSET(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
static float VSUM(__m256 a)
{
    float t[8];
    _mm256_storeu_ps(t, a);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#else
#error "fma_peak needs FMA (build with -march=native on an x86-64 machine with FMA)"
#endif

#define CHAINS 12

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float fma_loop(long iters, float seed)
{
    vec acc[CHAINS];
    vec a = VSET(0.999999f), b = VSET(1e-7f * seed);
    for (int c = 0; c < CHAINS; c++)
        acc[c] = VSET((float)c);
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS; c++)
            acc[c] = VFMA(acc[c], a, b);
    vec s = acc[0];
    for (int c = 1; c < CHAINS; c++)
        s = VADD(s, acc[c]);
    return VSUM(s);
}

static double measure(int threads, long iters)
{
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        float sink = 0;
        double t0 = seconds();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += fma_loop(iters, (float)omp_get_thread_num() + 1.0f);
        double t = seconds() - t0;
        double gflops = 2.0 * CHAINS * LANES * (double)iters * threads / t / 1e9;
        if (gflops > best)
            best = gflops;
        if (sink == 12345.0f) /* keeps the loop alive */
            printf(" ");
    }
    return best;
}

int main(int argc, char **argv)
{
    int nthreads = argc > 1 ? atoi(argv[1]) : omp_get_max_threads();
    long iters = 100000000L / CHAINS;
    printf("1 %.1f\n", measure(1, iters));
    if (nthreads > 1)
        printf("%d %.1f\n", nthreads, measure(nthreads, iters));
    return 0;
}
