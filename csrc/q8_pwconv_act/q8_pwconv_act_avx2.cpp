// The avx2 build of the int8 pointwise kernel (vpmaddwd on widened values: exact).
#define MBV3_ISA_AVX2
#include "q8_pwconv_act_kernel.h"
