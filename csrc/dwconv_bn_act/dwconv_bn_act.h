// Torch-free interface of the fused depthwise conv + (folded) BatchNorm + activation kernels.
#pragma once
#include <cstdint>

#include "common/activation.h"

namespace mbv3 {

// NHWC float32 tensors, dense.  `w` is packed [k*k][C] (tap-major, channels contiguous) so a
// tap's weights for a channel tile are one vector load; `b` is [C].
struct DwConvParams {
  const float* x;
  const float* w;
  const float* b;
  float* y;
  int64_t N, C, H, W;  // input
  int64_t OH, OW;      // output
  int k, stride, pad, dil;
  Act act;
};

// Computes output rows [row_begin, row_end) of the flattened (n, oh) range, channels
// [c_begin, c_end) (any split; each range is tiled from c_begin in vectors, tail masked).
#define MBV3_DECLARE_DWCONV(ns) \
  namespace ns { void dwconv_bn_act(const DwConvParams& p, int64_t row_begin, int64_t row_end, \
                                    int64_t c_begin, int64_t c_end); }
MBV3_DECLARE_DWCONV(scalar)
MBV3_DECLARE_DWCONV(avx2)
MBV3_DECLARE_DWCONV(avx512)
MBV3_DECLARE_DWCONV(neon)
#undef MBV3_DECLARE_DWCONV

}  // namespace mbv3
