// The scalar build of the int8 pointwise kernel: q8.h's functions, element by element.
#define MBV3_ISA_SCALAR
#include "q8_pwconv_act_kernel.h"
