// Torch-free interface of the int8 depthwise conv + requantization (+ activation table) kernels.
#pragma once
#include <cstdint>

#include "common/q8.h"

namespace mbv3 {

constexpr int kQ8DwMaxK = 7;
constexpr int64_t kQ8DwChannelPad = 32;  // weight rows are padded to this (the widest tile)
// pack_weight's int16 layout: a header of kQ8DwPackHeader values {magic, C, k, 0...} (64 bytes,
// keeps the rows aligned), the taps-major rows [k*k][Cpad], then each channel's weight sum [Cpad].
constexpr int16_t kQ8DwPackMagic = 0x5138;
constexpr int64_t kQ8DwPackHeader = 32;

// x NHWC uint8; w int16 [k*k][Cpad] (taps-major, zeros past C); y NHWC uint8.  r.bias_int holds
// bias_int - x_zp * (sum of the channel's weights): the kernels sum x * w and read padding as
// x_zp, which gives exactly sum (x - x_zp) * w over the real taps.
struct Q8DwArgs {
  const uint8_t* x;
  const int16_t* w;
  uint8_t* y;
  int64_t N, C, H, W, OH, OW, Cpad;
  int k, stride, pad, dil;
  int32_t x_zp;
  Q8Requant r;
};

// Output rows [row_begin, row_end) of the flattened (n, oh) range, channels [c_begin, c_end);
// c_begin a multiple of 32.
#define MBV3_DECLARE_Q8_DWCONV(ns) \
  namespace ns {                   \
  void q8_dwconv_act(const Q8DwArgs& p, int64_t row_begin, int64_t row_end, int64_t c_begin, int64_t c_end); \
  }
MBV3_DECLARE_Q8_DWCONV(scalar)
MBV3_DECLARE_Q8_DWCONV(avx2)
MBV3_DECLARE_Q8_DWCONV(avx512_vnni)
#undef MBV3_DECLARE_Q8_DWCONV

}  // namespace mbv3
