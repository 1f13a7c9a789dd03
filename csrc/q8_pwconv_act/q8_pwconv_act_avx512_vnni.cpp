// The avx512_vnni build of the int8 pointwise kernel (vpdpbusd).
#define MBV3_ISA_AVX512
#define MBV3_WITH_AVX512VNNI
#include "q8_pwconv_act_kernel.h"
