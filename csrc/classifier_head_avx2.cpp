// The avx2 build of the classifier head kernels (flags: setup.py / tests/neon).
#define MBV3_ISA_AVX2
#include "classifier_head_kernel.h"
