// The avx512 build of the pointwise kernel (flags: setup.py / tests/neon).
#define MBV3_ISA_AVX512
#include "pwconv_bn_act_kernel.h"
