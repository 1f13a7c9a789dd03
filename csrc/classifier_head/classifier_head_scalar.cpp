// The scalar build of the classifier head kernels (its target: common/simd.h).
#define MBV3_ISA_SCALAR
#include "classifier_head_kernel.h"
