// The neon build of the dense conv kernel (flags: setup.py / tests/neon).
#define MBV3_ISA_NEON
#include "conv_bn_act_kernel.h"
