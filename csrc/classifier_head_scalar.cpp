// The scalar build of the classifier head kernels (flags: setup.py / tests/neon).
#define MBV3_ISA_SCALAR
#include "classifier_head_kernel.h"
