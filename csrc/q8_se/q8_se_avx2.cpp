// The avx2 build of the q8 GEMV (its target: common/simd.h).
#define MBV3_ISA_AVX2
#include "q8_se_kernel.h"
