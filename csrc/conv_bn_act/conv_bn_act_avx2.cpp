// The avx2 build of the dense conv kernel (its target: common/simd.h).
#define MBV3_ISA_AVX2
#include "conv_bn_act_kernel.h"
