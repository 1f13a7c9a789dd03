// The avx512 build of the dense conv kernel (flags: setup.py / tests/neon).
#define MBV3_ISA_AVX512
#include "conv_bn_act_kernel.h"
