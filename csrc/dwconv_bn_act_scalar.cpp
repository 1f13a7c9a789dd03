// The scalar build of the depthwise kernel (flags: setup.py / tests/neon).
#define MBV3_ISA_SCALAR
#include "dwconv_bn_act_kernel.h"
