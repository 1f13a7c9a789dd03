// The neon build of the int8 stem conv and quantizer: an SDOT conv where the CPU has FEAT_DotProd,
// else (ARMv8.0) the portable kernel, vectorized over output channels by the compiler (its target:
// common/simd.h).
#define MBV3_ISA_NEON
#include "q8_conv_act_kernel.h"
