/* Run-time choice of the CPU backend's instruction-set variant (cpu_isa.h explains the variants).  Compiled once,
 * for the baseline; the Makefile defines CPU_HAVE_<variant> here for every variant it builds. */
#include <stdlib.h>
#include <string.h>

#include "backend_cpu/cpu_isa.h"

typedef struct cpu_isa_variant {
    const char *name;
    int level; /* x86-64 micro-architecture level the variant is compiled for (1: the baseline) */
    const char *needs; /* for the message when the CPU lacks it */
    vxm_status (*create)(vxm_context *ctx, vxm_backend **out);
} cpu_isa_variant;

/* Best first. */
static const cpu_isa_variant variants[] = {
#ifdef CPU_HAVE_avx512
    {"avx512", 4, "AVX-512 F/BW/CD/DQ/VL (x86-64-v4)", cpu_backend_create_avx512},
#endif
#ifdef CPU_HAVE_avx2
    {"avx2", 3, "AVX2 + FMA (x86-64-v3)", cpu_backend_create_avx2},
#endif
    {"baseline", 1, "", cpu_backend_create_baseline},
};

/* Whether the CPU (and the OS, which must save the wider registers: libgcc checks XCR0) runs code compiled for
 * x86-64 level 3 or 4.  gcc >= 12 asks for the level exactly as -march=x86-64-vN defines it; otherwise the
 * features the kernels and the compiler's code for that level rely on. */
static int cpu_has_level(int level)
{
    if (level <= 1)
        return 1;
#if defined(CPU_HAVE_avx2) || defined(CPU_HAVE_avx512)
    __builtin_cpu_init();
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
    return level == 3 ? __builtin_cpu_supports("x86-64-v3") != 0 : __builtin_cpu_supports("x86-64-v4") != 0;
#else
    int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
             __builtin_cpu_supports("bmi2");
    if (level == 3)
        return v3;
    return v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
#endif
#else
    return 0;
#endif
}

/* VXM_CPU_ISA (unset, empty or "auto": the best variant this CPU runs) -> *v. */
static vxm_status cpu_isa_select(vxm_context *ctx, const cpu_isa_variant **v)
{
    const int n = (int)(sizeof variants / sizeof variants[0]);
    const char *want = getenv("VXM_CPU_ISA");
    *v = &variants[n - 1];
    if (!want || !*want || !strcmp(want, "auto")) {
        for (int i = 0; i < n; i++)
            if (cpu_has_level(variants[i].level)) {
                *v = &variants[i];
                break;
            }
        return VXM_OK;
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(want, variants[i].name)) {
            *v = &variants[i];
            if (cpu_has_level(variants[i].level))
                return VXM_OK;
            return vxm_error(ctx, VXM_EDEVICE, "VXM_CPU_ISA", "%s needs %s, which this CPU lacks", want,
                             variants[i].needs);
        }
    if (!strcmp(want, "avx2") || !strcmp(want, "avx512"))
        return vxm_error(ctx, VXM_EDEVICE, "VXM_CPU_ISA", "%s: this build has the baseline kernels only", want);
    return vxm_error(ctx, VXM_EINVAL, "VXM_CPU_ISA", "unknown kernel variant '%s' (use baseline, avx2, avx512 or auto)",
                     want);
}

const char *vxm_backend_cpu_isa(vxm_context *ctx)
{
    const cpu_isa_variant *v;
    return cpu_isa_select(ctx, &v) == VXM_OK ? v->name : NULL;
}

vxm_status vxm_backend_cpu_create(vxm_context *ctx, vxm_backend **out)
{
    *out = NULL;
    const cpu_isa_variant *v;
    vxm_status st = cpu_isa_select(ctx, &v);
    return st != VXM_OK ? st : v->create(ctx, out);
}
