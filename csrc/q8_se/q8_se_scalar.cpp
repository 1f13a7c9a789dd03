// The scalar build of the q8 GEMV (its target: common/simd.h).
#define MBV3_ISA_SCALAR
#include "q8_se_kernel.h"
