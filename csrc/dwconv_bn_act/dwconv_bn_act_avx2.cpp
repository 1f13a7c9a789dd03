// The avx2 build of the depthwise kernel (its target: common/simd.h).
#define MBV3_ISA_AVX2
#include "dwconv_bn_act_kernel.h"
