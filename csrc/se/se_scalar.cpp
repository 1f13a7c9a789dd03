// The scalar build of the squeeze-excitation kernels (its target: common/simd.h).
#define MBV3_ISA_SCALAR
#include "se_kernel.h"
