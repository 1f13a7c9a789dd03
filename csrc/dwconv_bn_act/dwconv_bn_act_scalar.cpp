// The scalar build of the depthwise kernel (its target: common/simd.h).
#define MBV3_ISA_SCALAR
#include "dwconv_bn_act_kernel.h"
