// The avx512_bf16 build (AVX-512 + AVX512_BF16) of the classifier head kernels (its target: common/simd.h).
#define MBV3_ISA_AVX512
#define MBV3_WITH_AVX512BF16
#include "classifier_head_kernel.h"
