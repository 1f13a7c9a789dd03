// The neon build of the classifier head kernels (its target: common/simd.h).
#define MBV3_ISA_NEON
#include "classifier_head_kernel.h"
