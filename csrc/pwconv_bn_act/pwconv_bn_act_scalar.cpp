// The scalar build of the pointwise kernel (its target: common/simd.h).
#define MBV3_ISA_SCALAR
#include "pwconv_bn_act_kernel.h"
