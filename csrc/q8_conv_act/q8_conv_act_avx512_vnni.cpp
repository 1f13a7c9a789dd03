// The avx512_vnni build of the int8 stem conv and quantizer.
#define MBV3_ISA_AVX512
#define MBV3_WITH_AVX512VNNI
#include "q8_conv_act_kernel.h"
