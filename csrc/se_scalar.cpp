// The scalar build of the squeeze-excitation kernels (flags: setup.py / tests/neon).
#define MBV3_ISA_SCALAR
#include "se_kernel.h"
