// The neon build of the int8 pointwise kernel (vmlal on int16; SDOT where the CPU has FEAT_DotProd).
#define MBV3_ISA_NEON
#include "q8_pwconv_act_kernel.h"
