// The neon build of the pointwise kernel (its target: common/simd.h).
#define MBV3_ISA_NEON
#include "pwconv_bn_act_kernel.h"
