// The scalar build of the int8 stem conv and quantizer.
#define MBV3_ISA_SCALAR
#include "q8_conv_act_kernel.h"
