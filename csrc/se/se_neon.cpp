// The neon build of the squeeze-excitation kernels (its target: common/simd.h).
#define MBV3_ISA_NEON
#include "se_kernel.h"
