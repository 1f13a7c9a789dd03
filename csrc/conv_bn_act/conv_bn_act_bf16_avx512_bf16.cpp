// The avx512_bf16 build (AVX-512 + AVX512_BF16) of the dense conv kernel for bf16 x / w / y (its target: common/simd.h):
// vdpbf16ps (conv_bn_act_dp.h), the widening kernel for the shapes that one does not take.
#define MBV3_ISA_AVX512
#define MBV3_WITH_AVX512BF16
#define MBV3_CONV_BF16_UNIT
#include "conv_bn_act_kernel.h"
