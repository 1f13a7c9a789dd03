// The neon build of the depthwise kernel (flags: setup.py / tests/neon).
#define MBV3_ISA_NEON
#include "dwconv_bn_act_kernel.h"
