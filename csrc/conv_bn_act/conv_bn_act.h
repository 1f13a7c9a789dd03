// Torch-free interface of the fused dense KxK conv + (folded) BatchNorm + activation kernels,
// made for few input channels (MobileNetV3's stem: 3 -> 16 channels, 3x3, stride 2).
#pragma once
#include <cstdint>

#include "common/activation.h"
#include "common/bf16.h"

namespace mbv3 {

// x: T (float or bf16) [N, Cin, H, W] read through its element strides (NCHW, channels_last or
// any view; never copied).  w: T, packed [k][k][Cin][Cout] (output channels contiguous: one
// vector load per tap and channel tile).  b: [Cout], float32 for either T.  y: T, dense NHWC
// [N, OH, OW, Cout].  Dilation 1, groups 1.  bf16 is widened on load, summed in float32 and
// rounded once on store (round-to-nearest-even, common/bf16.h).
template <class T>
struct ConvArgs {
  const T* x;
  const T* w;
  const float* b;
  T* y;
  int64_t N, Cin, H, W;              // input
  int64_t sx_n, sx_c, sx_h, sx_w;    // x's strides, in elements
  int64_t Cout, OH, OW;              // output
  int k, stride, pad;
  Act act;
};
using ConvParams = ConvArgs<float>;
using ConvParamsBf16 = ConvArgs<bf16>;

// Computes output rows [row_begin, row_end) of the flattened (n, oh) range, all channels.
#define MBV3_DECLARE_CONV(ns)                                                        \
  namespace ns {                                                                     \
  void conv_bn_act(const ConvParams& p, int64_t row_begin, int64_t row_end);         \
  void conv_bn_act(const ConvParamsBf16& p, int64_t row_begin, int64_t row_end);     \
  }
MBV3_DECLARE_CONV(scalar)
MBV3_DECLARE_CONV(avx2)
MBV3_DECLARE_CONV(avx512)
MBV3_DECLARE_CONV(avx512_bf16)
MBV3_DECLARE_CONV(neon)
#undef MBV3_DECLARE_CONV
// NEON + FEAT_BF16: bf16 on BFDOT (conv_bn_act_bf16_neon_bf16.cpp); its float32 is neon's.
namespace neon_bf16 {
void conv_bn_act(const ConvParamsBf16& p, int64_t row_begin, int64_t row_end);
}

template <class T>
using ConvFn = void(const ConvArgs<T>&, int64_t, int64_t);

}  // namespace mbv3
