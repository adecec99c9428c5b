/* The CPU backend's instruction-set variants (issue 12, "one portable binary").
 *
 * The library is built for the x86-64 baseline (ARCH_FLAGS), so it runs on every 64-bit PC.  The Makefile compiles
 * every src/backend_cpu file except cpu_isa.c once per variant with -DCPU_ISA=<name>:
 *     baseline  the build's ARCH_FLAGS (x86-64: SSE2, mul + add)
 *     avx2      -march=x86-64-v3 (AVX2 + FMA, 8-wide)
 *     avx512    -march=x86-64-v4 -mprefer-vector-width=512 (16-wide, 32 vector registers)
 * partially links each variant's objects into one object and keeps only its cpu_backend_create_<name> global, so
 * the three copies of the backend's internal functions (same names) never meet.  cpu_isa.c picks one when the
 * backend is created: VXM_CPU_ISA=baseline|avx2|avx512 forces it, else the best the CPU supports.  A build that
 * compiles src/backend_cpu once (sanitizers, fuzzing) has the baseline variant only.
 *
 * Results are bitwise reproducible on a given variant (any thread count); they differ slightly between variants
 * (FMA vs mul + add, vector widths change the convolution's summation order). */
#ifndef VXM_BACKEND_CPU_ISA_H
#define VXM_BACKEND_CPU_ISA_H

#include "backend.h"

#ifndef CPU_ISA
#define CPU_ISA baseline
#endif
#define CPU_ISA_PASTE_(a, b) a##_##b
#define CPU_ISA_PASTE(a, b) CPU_ISA_PASTE_(a, b)
#define CPU_ISA_STR_(x) #x
#define CPU_ISA_STR(x) CPU_ISA_STR_(x)
/* name_<variant>: the one symbol a variant exports. */
#define CPU_ISA_NAME(name) CPU_ISA_PASTE(name, CPU_ISA)
/* "avx2" etc.: the variant this file is compiled as. */
#define CPU_ISA_NAME_STR CPU_ISA_STR(CPU_ISA)

/* Each variant's constructor (cpu_backend.c compiled per variant); vxm_backend_cpu_create picks one. */
vxm_status cpu_backend_create_baseline(vxm_context *ctx, vxm_backend **out);
vxm_status cpu_backend_create_avx2(vxm_context *ctx, vxm_backend **out);
vxm_status cpu_backend_create_avx512(vxm_context *ctx, vxm_backend **out);

/* The variant vxm_backend_cpu_create would use now ("baseline", "avx2", "avx512"), or NULL with the error in ctx
 * when VXM_CPU_ISA names an unknown variant, one not built in, or one this CPU lacks. */
const char *vxm_backend_cpu_isa(vxm_context *ctx);

#endif
