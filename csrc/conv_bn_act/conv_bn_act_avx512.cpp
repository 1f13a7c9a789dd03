// The avx512 build of the dense conv kernel (its target: common/simd.h).
#define MBV3_ISA_AVX512
#include "conv_bn_act_kernel.h"
