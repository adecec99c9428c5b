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

/* Twelve named accumulators: an array here is kept in memory by gcc, which measures store forwarding
 * instead of the FMA units. */
static float fma_loop(long iters, float seed)
{
    vec a = VSET(0.999999f), b = VSET(1e-7f * seed);
    vec c0 = VSET(0), c1 = VSET(1), c2 = VSET(2), c3 = VSET(3), c4 = VSET(4), c5 = VSET(5);
    vec c6 = VSET(6), c7 = VSET(7), c8 = VSET(8), c9 = VSET(9), c10 = VSET(10), c11 = VSET(11);
    for (long i = 0; i < iters; i++) {
        c0 = VFMA(c0, a, b); c1 = VFMA(c1, a, b); c2 = VFMA(c2, a, b); c3 = VFMA(c3, a, b);
        c4 = VFMA(c4, a, b); c5 = VFMA(c5, a, b); c6 = VFMA(c6, a, b); c7 = VFMA(c7, a, b);
        c8 = VFMA(c8, a, b); c9 = VFMA(c9, a, b); c10 = VFMA(c10, a, b); c11 = VFMA(c11, a, b);
        __asm__ volatile("" ::: "memory");
    }
    vec s = VADD(VADD(VADD(c0, c1), VADD(c2, c3)), VADD(VADD(c4, c5), VADD(c6, c7)));
    s = VADD(s, VADD(VADD(c8, c9), VADD(c10, c11)));
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
