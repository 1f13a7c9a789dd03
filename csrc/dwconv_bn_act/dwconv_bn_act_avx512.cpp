// The avx512 build of the depthwise kernel (its target: common/simd.h).
#define MBV3_ISA_AVX512
#include "dwconv_bn_act_kernel.h"
