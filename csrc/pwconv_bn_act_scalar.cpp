// The scalar build of the pointwise kernel (flags: setup.py / tests/neon).
#define MBV3_ISA_SCALAR
#include "pwconv_bn_act_kernel.h"
