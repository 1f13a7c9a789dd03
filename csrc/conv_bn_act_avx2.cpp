// The avx2 build of the dense conv kernel (flags: setup.py / tests/neon).
#define MBV3_ISA_AVX2
#include "conv_bn_act_kernel.h"
