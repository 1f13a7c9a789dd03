// The neon build of the pointwise kernel (flags: setup.py / tests/neon).
#define MBV3_ISA_NEON
#include "pwconv_bn_act_kernel.h"
