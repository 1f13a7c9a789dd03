// The avx512_vnni build of the int8 depthwise kernel (vpdpwssd).
#define MBV3_ISA_AVX512
#define MBV3_WITH_AVX512VNNI
#include "q8_dwconv_act_kernel.h"
