// The neon build of the int8 depthwise kernel (vmlal_s16 on widened int16 values; ARMv8.0).
#define MBV3_ISA_NEON
#include "q8_dwconv_act_kernel.h"
