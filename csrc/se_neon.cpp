// The neon build of the squeeze-excitation kernels (flags: setup.py / tests/neon).
#define MBV3_ISA_NEON
#include "se_kernel.h"
