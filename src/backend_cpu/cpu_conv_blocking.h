/* Register blocking shared by the CPU convolution kernels (cpu_conv.c forward, cpu_conv_backward.c filter
 * gradient): how many output vectors and voxels one register block holds per instruction set, and the macros that
 * instantiate one kernel per block shape into a table indexed [V][R]. */
#ifndef VXM_BACKEND_CPU_CONV_BLOCKING_H
#define VXM_BACKEND_CPU_CONV_BLOCKING_H

#include "backend_cpu/cpu_simd.h"

#define CPU_VMAX (CPU_NVREG >= 32 ? 4 : 2) /* vectors of output channels per register block */

/* Voxels per register block for V output vectors: R*V accumulators + V weights + 1 broadcast registers.
 * Measured on AVX-512 (Xeon, 32 zmm): V=2 R=12 reaches ~180 GFLOP/s per core on 64->32 (73% of FMA peak); larger
 * R changes little.  On Zen 4 at 1 thread the large layers reach 96-99 % of the FMA peak with AVX-512 and AVX2.
 * Tried for AVX2 and dropped: 3 voxels x 4 vectors with the broadcasts in registers (Cout = 32 in one pass, as
 * oneDNN's AVX2 kernels block) was faster alone but 5-10 % slower inside a registration, where the doubled
 * weight traffic per voxel competes with the other layers' data in L2.  Overridable with -DRMAX_1=... for tuning
 * (R <= RBLOCK_MAX). */
#define RBLOCK_MAX 28
#ifndef RMAX_1
#if CPU_NVREG >= 32
#define RMAX_1 16
#define RMAX_2 12
#define RMAX_3 8
#define RMAX_4 6
#else
#define RMAX_1 12
#define RMAX_2 6
#endif
#endif

_Static_assert(RMAX_1 <= RBLOCK_MAX && RMAX_2 <= RBLOCK_MAX, "register block too large");

/* SEQ_n(M, V) expands to M(1, V) M(2, V) ... M(n, V): instantiates the register-blocked kernels. */
#define SEQ_0(M, V)
#define SEQ_1(M, V) SEQ_0(M, V) M(1, V)
#define SEQ_2(M, V) SEQ_1(M, V) M(2, V)
#define SEQ_3(M, V) SEQ_2(M, V) M(3, V)
#define SEQ_4(M, V) SEQ_3(M, V) M(4, V)
#define SEQ_5(M, V) SEQ_4(M, V) M(5, V)
#define SEQ_6(M, V) SEQ_5(M, V) M(6, V)
#define SEQ_7(M, V) SEQ_6(M, V) M(7, V)
#define SEQ_8(M, V) SEQ_7(M, V) M(8, V)
#define SEQ_9(M, V) SEQ_8(M, V) M(9, V)
#define SEQ_10(M, V) SEQ_9(M, V) M(10, V)
#define SEQ_11(M, V) SEQ_10(M, V) M(11, V)
#define SEQ_12(M, V) SEQ_11(M, V) M(12, V)
#define SEQ_13(M, V) SEQ_12(M, V) M(13, V)
#define SEQ_14(M, V) SEQ_13(M, V) M(14, V)
#define SEQ_15(M, V) SEQ_14(M, V) M(15, V)
#define SEQ_16(M, V) SEQ_15(M, V) M(16, V)
#define SEQ_17(M, V) SEQ_16(M, V) M(17, V)
#define SEQ_18(M, V) SEQ_17(M, V) M(18, V)
#define SEQ_19(M, V) SEQ_18(M, V) M(19, V)
#define SEQ_20(M, V) SEQ_19(M, V) M(20, V)
#define SEQ_21(M, V) SEQ_20(M, V) M(21, V)
#define SEQ_22(M, V) SEQ_21(M, V) M(22, V)
#define SEQ_23(M, V) SEQ_22(M, V) M(23, V)
#define SEQ_24(M, V) SEQ_23(M, V) M(24, V)
#define SEQ_25(M, V) SEQ_24(M, V) M(25, V)
#define SEQ_26(M, V) SEQ_25(M, V) M(26, V)
#define SEQ_27(M, V) SEQ_26(M, V) M(27, V)
#define SEQ_28(M, V) SEQ_27(M, V) M(28, V)
#define SEQ(n, M, V) SEQ_I(n, M, V)
#define SEQ_I(n, M, V) SEQ_##n(M, V)

/* KERNEL_TABLE(DEF, PTR, T, name) instantiates DEF(R, V) for V = 1..CPU_VMAX, R = 1..rmax[V], and the table
 * name[V][R] of type T (used for the forward and the filter-gradient kernels). */
#if CPU_VMAX >= 4
#define KERNEL_TABLE(DEF, PTR, T, name)                                                                             \
    SEQ(RMAX_1, DEF, 1) SEQ(RMAX_2, DEF, 2) SEQ(RMAX_3, DEF, 3) SEQ(RMAX_4, DEF, 4)                                 \
    static const T name##_1[] = {NULL, SEQ(RMAX_1, PTR, 1)};                                                        \
    static const T name##_2[] = {NULL, SEQ(RMAX_2, PTR, 2)};                                                        \
    static const T name##_3[] = {NULL, SEQ(RMAX_3, PTR, 3)};                                                        \
    static const T name##_4[] = {NULL, SEQ(RMAX_4, PTR, 4)};                                                        \
    static const T *const name[] = {NULL, name##_1, name##_2, name##_3, name##_4};
static const int rmax[] = {0, RMAX_1, RMAX_2, RMAX_3, RMAX_4};
#else
#define KERNEL_TABLE(DEF, PTR, T, name)                                                                             \
    SEQ(RMAX_1, DEF, 1) SEQ(RMAX_2, DEF, 2)                                                                         \
    static const T name##_1[] = {NULL, SEQ(RMAX_1, PTR, 1)};                                                        \
    static const T name##_2[] = {NULL, SEQ(RMAX_2, PTR, 2)};                                                        \
    static const T *const name[] = {NULL, name##_1, name##_2};
static const int rmax[] = {0, RMAX_1, RMAX_2};
#endif

#endif
