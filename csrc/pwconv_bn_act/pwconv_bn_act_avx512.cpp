// The avx512 build of the pointwise kernel (its target: common/simd.h).
#define MBV3_ISA_AVX512
#include "pwconv_bn_act_kernel.h"
