// Torch-free interface of the int8 stem conv (dense KxK) and of the float -> quint8 quantizer.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/q8.h"

namespace mbv3 {

// x uint8 NHWC, already spatially padded with x_zp (so H, W are the padded sizes and pad is 0),
// Cin a multiple of 4 (pad channels' weights 0), element strides sn, sc (= 1), sh, sw (= Cin);
// w int8 [CoutPad / 16][k*k*Cin/4][16 output channels][4 input channels] (zeros past Cout), what
// one vpdpbusd takes per group of 4 input channels; y NHWC uint8.  r.bias_int holds bias_int -
// x_zp * (sum of the output channel's weights): the kernels sum x * w.
constexpr int64_t kQ8ConvCoutBlock = 16;
// pack_weight's int32 [Cout, k, k, L] layout: a header {magic, Cout, Cin, k, 0...} of
// kQ8ConvPackHeader values, the weight sums [CoutPad], then w as above (Cin rounded up to 4).
constexpr int32_t kQ8ConvPackMagic = 0x51384356;
constexpr int64_t kQ8ConvPackHeader = 16;
struct Q8ConvArgs {
  const uint8_t* x;
  const int8_t* w;
  uint8_t* y;
  int64_t N, Cin, H, W, Cout, CoutPad, OH, OW;
  int64_t sn, sc, sh, sw;
  int k, stride, pad;
  int32_t x_zp;
  Q8Requant r;
};

// torch.quantize_per_tensor(x, scale, zp, torch.quint8).int_repr() as ATen (fbgemm's quantizer)
// computes it: t = min(x * (1 / scale), 2147483520) in float32 (vminps: NaN -> the bound), then
// cvtps2dq (round to nearest even; below -2**31 -> INT32_MIN), + zp wrapping in int32, clamped to
// [0, 255].  So NaN, inf and huge values give 255 for zp < 128 but 0 for zp >= 128 (the int32 sum
// wraps), which the tests pin against PyTorch.
constexpr float kQ8QuantizeMax = 2147483520.f;  // the largest float32 below 2**31
inline uint8_t q8_quantize_value(float x, float inv_scale, int32_t zp) {
  float t = x * inv_scale;
  t = t < kQ8QuantizeMax ? t : kQ8QuantizeMax;
  const int32_t r = t >= -2147483648.f ? static_cast<int32_t>(std::nearbyint(t)) : INT32_MIN;
  const int32_t q = static_cast<int32_t>(static_cast<uint32_t>(r) + static_cast<uint32_t>(zp));
  return static_cast<uint8_t>(std::min(std::max(q, 0), 255));
}

#define MBV3_DECLARE_Q8_CONV(ns)                                                    \
  namespace ns {                                                                    \
  void q8_conv_act(const Q8ConvArgs& p, int64_t row_begin, int64_t row_end);        \
  void q8_quantize(const float* x, uint8_t* y, int64_t n, float inv_scale, int32_t zp); \
  void q8_quantize_pixels(const float* x, int64_t plane, int cin, uint32_t* y, int64_t n, float inv_scale, \
                          int32_t zp); \
  }
MBV3_DECLARE_Q8_CONV(scalar)
MBV3_DECLARE_Q8_CONV(avx2)
MBV3_DECLARE_Q8_CONV(avx512_vnni)
MBV3_DECLARE_Q8_CONV(neon)
#undef MBV3_DECLARE_Q8_CONV

}  // namespace mbv3
