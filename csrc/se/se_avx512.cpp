// The avx512 build of the squeeze-excitation kernels (its target: common/simd.h).
#define MBV3_ISA_AVX512
#include "se_kernel.h"
