// Torch-free interface of the int8 stem conv (dense KxK) and of the float -> quint8 quantizer.
#pragma once
#include <cstdint>

#include "common/q8.h"

namespace mbv3 {

// x NHWC uint8 [N, H, W, Cin]; w int32 [k*k*Cin][Cout] (tap, input channel, output channels
// contiguous); y NHWC uint8.  r.bias_int holds bias_int - x_zp * (sum of the output channel's
// weights): the kernels sum x * w and read padding as x_zp.
struct Q8ConvArgs {
  const uint8_t* x;
  const int32_t* w;
  uint8_t* y;
  int64_t N, Cin, H, W, Cout, OH, OW;
  int k, stride, pad;
  int32_t x_zp;
  Q8Requant r;
};

// torch.quantize_per_tensor(x, scale, zp, torch.quint8).int_repr() on this machine's ATen (fbgemm):
// q = clamp(zp + rne(x * (1 / scale)), 0, 255) in float32, NaN -> 255.
inline uint8_t q8_quantize_value(float x, float inv_scale, int32_t zp) {
  const float v = std::nearbyint(x * inv_scale) + static_cast<float>(zp);
  if (v >= 0.f) return v <= 255.f ? static_cast<uint8_t>(static_cast<int32_t>(v)) : 255;
  return v < 0.f ? 0 : 255;  // NaN: 255
}

#define MBV3_DECLARE_Q8_CONV(ns)                                                    \
  namespace ns {                                                                    \
  void q8_conv_act(const Q8ConvArgs& p, int64_t row_begin, int64_t row_end);        \
  void q8_quantize(const float* x, uint8_t* y, int64_t n, float inv_scale, int32_t zp); \
  }
MBV3_DECLARE_Q8_CONV(scalar)
MBV3_DECLARE_Q8_CONV(avx2)
MBV3_DECLARE_Q8_CONV(avx512_vnni)
#undef MBV3_DECLARE_Q8_CONV

}  // namespace mbv3
