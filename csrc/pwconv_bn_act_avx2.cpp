// The avx2 build of the pointwise kernel (flags: setup.py / tests/neon).
#define MBV3_ISA_AVX2
#include "pwconv_bn_act_kernel.h"
