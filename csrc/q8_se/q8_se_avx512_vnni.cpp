// The AVX-512 VNNI build of the q8 GEMV (vpdpbusd; its target: common/simd.h).
#define MBV3_ISA_AVX512
#define MBV3_WITH_AVX512VNNI
#include "q8_se_kernel.h"
