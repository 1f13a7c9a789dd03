// The avx512 build of the depthwise kernel (flags: setup.py / tests/neon).
#define MBV3_ISA_AVX512
#include "dwconv_bn_act_kernel.h"
