// The avx512 build of the classifier head kernels (its target: common/simd.h).
#define MBV3_ISA_AVX512
#include "classifier_head_kernel.h"
