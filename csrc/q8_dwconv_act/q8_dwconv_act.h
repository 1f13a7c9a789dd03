// Torch-free interface of the int8 depthwise conv + requantization (+ activation table) kernels.
#pragma once
#include <cstdint>

#include "common/q8.h"

namespace mbv3 {

constexpr int kQ8DwMaxK = 7;
constexpr int64_t kQ8DwChannelPad = 32;  // weight rows are padded to this (the widest tile)
// pack_weight's int16 layout: a header of kQ8DwPackHeader values {magic, C, k, 0...} (64 bytes,
// keeps the rows aligned), the taps-major rows [k*k][Cpad], each channel's weight sum [Cpad],
// then the vpdpbusd weights (q8_dw_pack_dot, int8 bytes).
constexpr int16_t kQ8DwPackMagic = 0x5139;
constexpr int64_t kQ8DwPackHeader = 32;

// The vpdpbusd path (avx512_vnni; dilation 1, k 3 stride 1, k 5 stride 1 or 2: k 3 stride 2 is
// faster on the vpdpwssd kernel, which reads each input once per output) multiplies 4 vertically
// consecutive input rows at once: a 32-channel tile of 4 rows is interleaved into 4 vectors
// ("groups" g), byte 16L + 4j + q of group g = row q of channel 16L + 4g + j (L < 2, j < 4).
// Its weights: per tile t, column kw, row offset delta in [-3, k) (the 4 rows start at kernel row
// delta): byte ((t * k + kw) * (k + 3) + delta + 3) * 128 + 32g + 16L + 4j + q =
// w[32t + 16L + 4g + j][delta + q][kw], 0 outside the kernel and past C.
constexpr int64_t kQ8DwDotTile = 32;
inline bool q8_dw_dot_geometry(int64_t k, int64_t stride, int64_t dilation) {
  return ((k == 3 && stride == 1) || (k == 5 && (stride == 1 || stride == 2))) && dilation == 1;
}
inline int64_t q8_dw_dot_bytes(int64_t Cpad, int64_t k) { return Cpad / kQ8DwDotTile * k * (k + 3) * 128; }
// w(c, kh, kw): channel c < C's weight.  out: q8_dw_dot_bytes(Cpad, k) bytes.
template <class F>
void q8_dw_pack_dot(int8_t* out, int64_t C, int64_t Cpad, int64_t k, F w) {
  int8_t* o = out;
  for (int64_t t = 0; t < Cpad / kQ8DwDotTile; ++t)
    for (int64_t kw = 0; kw < k; ++kw)
      for (int64_t delta = -3; delta < k; ++delta)
        for (int64_t g = 0; g < 4; ++g)
          for (int64_t L = 0; L < 2; ++L)
            for (int64_t j = 0; j < 4; ++j)
              for (int64_t q = 0; q < 4; ++q) {
                const int64_t c = kQ8DwDotTile * t + 16 * L + 4 * g + j, kh = delta + q;
                *o++ = c < C && kh >= 0 && kh < k ? static_cast<int8_t>(w(c, kh, kw)) : int8_t(0);
              }
}

// x NHWC uint8; w int16 [k*k][Cpad] (taps-major, zeros past C); y NHWC uint8.  r.bias_int holds
// bias_int - x_zp * (sum of the channel's weights): the kernels sum x * w and read padding as
// x_zp, which gives exactly sum (x - x_zp) * w over the real taps.
struct Q8DwArgs {
  const uint8_t* x;
  const int16_t* w;
  const int8_t* w8;  // q8_dw_pack_dot's weights, or null (then the vpdpbusd path is not taken)
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
MBV3_DECLARE_Q8_DWCONV(neon)
#undef MBV3_DECLARE_Q8_DWCONV

}  // namespace mbv3
