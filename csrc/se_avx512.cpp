// The avx512 build of the squeeze-excitation kernels (flags: setup.py / tests/neon).
#define MBV3_ISA_AVX512
#include "se_kernel.h"
