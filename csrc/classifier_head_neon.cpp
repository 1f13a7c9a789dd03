// The neon build of the classifier head kernels (flags: setup.py / tests/neon).
#define MBV3_ISA_NEON
#include "classifier_head_kernel.h"
