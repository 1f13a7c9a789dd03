// The scalar build of the int8 depthwise kernel.
#define MBV3_ISA_SCALAR
#include "q8_dwconv_act_kernel.h"
