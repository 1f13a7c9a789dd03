// The avx2 build of the squeeze-excitation kernels (flags: setup.py / tests/neon).
#define MBV3_ISA_AVX2
#include "se_kernel.h"
