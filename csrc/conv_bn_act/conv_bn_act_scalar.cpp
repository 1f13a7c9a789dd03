// The scalar build of the dense conv kernel (its target: common/simd.h).
#define MBV3_ISA_SCALAR
#include "conv_bn_act_kernel.h"
