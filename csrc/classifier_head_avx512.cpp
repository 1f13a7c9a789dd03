// The avx512 build of the classifier head kernels (flags: setup.py / tests/neon).
#define MBV3_ISA_AVX512
#include "classifier_head_kernel.h"
