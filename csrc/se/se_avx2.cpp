// The avx2 build of the squeeze-excitation kernels (its target: common/simd.h).
#define MBV3_ISA_AVX2
#include "se_kernel.h"
