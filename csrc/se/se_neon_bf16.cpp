// The neon_bf16 build (NEON + FEAT_BF16) of the squeeze-excitation kernels: the neon code, with
// bf16 FC weights read by rows summed by BFDOT (common/pool_fc_kernel.h; target: common/simd.h).
#define MBV3_ISA_NEON
#define MBV3_WITH_NEON_BF16
#include "se_kernel.h"
