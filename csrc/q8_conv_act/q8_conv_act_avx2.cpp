// The avx2 build of the int8 stem conv and quantizer.
#define MBV3_ISA_AVX2
#include "q8_conv_act_kernel.h"
