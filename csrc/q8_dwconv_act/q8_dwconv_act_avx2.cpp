// The avx2 build of the int8 depthwise kernel.
#define MBV3_ISA_AVX2
#include "q8_dwconv_act_kernel.h"
