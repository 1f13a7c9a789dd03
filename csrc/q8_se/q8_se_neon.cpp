// The neon build of the q8 GEMV and pool sums (vmlal_s16 on int16, SDOT where the CPU has
// FEAT_DotProd; its target: common/simd.h).
#define MBV3_ISA_NEON
#include "q8_se_kernel.h"
