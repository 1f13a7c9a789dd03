// The neon build of the dense conv kernel for bf16 x / w / y (its target: common/simd.h).
#define MBV3_ISA_NEON
#define MBV3_CONV_BF16_UNIT
#include "conv_bn_act_kernel.h"
