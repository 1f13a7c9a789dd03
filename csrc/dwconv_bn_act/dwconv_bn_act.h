// Torch-free interface of the fused depthwise conv + (folded) BatchNorm + activation kernels.
#pragma once
#include <cstdint>
#include <cstring>

#include "common/activation.h"
#include "common/bf16.h"

namespace mbv3 {

// NHWC tensors of T (float or bf16), dense.  `w` is packed [k*k][C] (tap-major, channels
// contiguous) so a tap's weights for a channel tile are one vector load; `b` is [C], float32
// for either T.
template <class T>
struct DwConvArgs {
  const T* x;
  const T* w;
  const float* b;
  T* y;
  int64_t N, C, H, W;  // input
  int64_t OH, OW;      // output
  int k, stride, pad, dil;
  Act act;
  // No inf or NaN among the weights (all_finite, by the binding): the specialised 3x3 / 5x5
  // blocks read padding as zeros, which is right only for finite weights.
  bool weights_finite;
};
using DwConvParams = DwConvArgs<float>;
using DwConvParamsBf16 = DwConvArgs<bf16>;

// No inf or NaN among the n weights (a branch-free scan the compiler vectorises).
inline bool all_finite(const float* w, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, w + i, sizeof u);
    bad |= (u & 0x7f800000u) == 0x7f800000u;
  }
  return bad == 0;
}
inline bool all_finite(const bf16* w, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad |= (w[i].bits & 0x7f80u) == 0x7f80u;
  return bad == 0;
}

// Computes output rows [row_begin, row_end) of the flattened (n, oh) range, channels
// [c_begin, c_end) (any split; each range is tiled from c_begin in vectors, tail masked).
#define MBV3_DECLARE_DWCONV(ns)                                                            \
  namespace ns {                                                                           \
  void dwconv_bn_act(const DwConvParams& p, int64_t row_begin, int64_t row_end, int64_t c_begin, \
                     int64_t c_end);                                                       \
  void dwconv_bn_act(const DwConvParamsBf16& p, int64_t row_begin, int64_t row_end,       \
                     int64_t c_begin, int64_t c_end);                                      \
  }
MBV3_DECLARE_DWCONV(scalar)
MBV3_DECLARE_DWCONV(avx2)
MBV3_DECLARE_DWCONV(avx512)
MBV3_DECLARE_DWCONV(avx512_bf16)
MBV3_DECLARE_DWCONV(neon)
#undef MBV3_DECLARE_DWCONV

template <class T>
using DwConvFn = void(const DwConvArgs<T>&, int64_t, int64_t, int64_t, int64_t);

}  // namespace mbv3
