// The neon_bf16 build (NEON + FEAT_BF16) of the dense conv kernel for bf16 x / w / y (its target:
// common/simd.h): BFDOT (conv_bn_act_dp_neon.h), the widening kernel for the shapes that one does
// not take.  bf16 only: on neon_bf16 the float32 conv is the neon unit's.
#define MBV3_ISA_NEON
#define MBV3_WITH_NEON_BF16
#define MBV3_CONV_BF16_UNIT
#include "conv_bn_act_kernel.h"
