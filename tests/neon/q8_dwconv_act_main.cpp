// Runs csrc/q8_dwconv_act/q8_dwconv_act_neon.cpp (the file the ARM build ships: the int8
// depthwise conv) on every case in a file, with the arguments the binding builds.
// Case (int64): N C H W k stride pad dil x_zp zp lo hi has_lut split L onednn, x uint8 NHWC
// [N, H, W, C], the packed weight (pack_weight, int16 [C, k, k, L]), bias_int [C], then float
// bias_float [C], float multiplier [C], float src_scale inv_scale if onednn (the Onednn
// requantization mode), lut [256] if any.  split 0: two calls over halves of the rows, as threads
// split the (image, output row) range; split 1: one call per (image, 64-channel block), as
// threads split few rows.  Output y NHWC [N, OH, OW, C] as floats.
#include <algorithm>

#include "q8_dwconv_act/q8_dwconv_act.h"
#include "case_io.h"

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    const int64_t N = in.i64(), C = in.i64(), H = in.i64(), W = in.i64();
    const int k = static_cast<int>(in.i64()), stride = static_cast<int>(in.i64());
    const int pad = static_cast<int>(in.i64()), dil = static_cast<int>(in.i64());
    const int32_t x_zp = static_cast<int32_t>(in.i64());
    mbv3::Q8Requant rq{};
    rq.zp = static_cast<int32_t>(in.i64());
    rq.lo = static_cast<int32_t>(in.i64());
    rq.hi = static_cast<int32_t>(in.i64());
    const bool has_lut = in.i64() != 0;
    const int64_t split = in.i64(), L = in.i64();
    const bool onednn = in.i64() != 0;
    const auto x = in.ints<uint8_t>(N * H * W * C);
    const auto packed = in.ints<int16_t>(C * k * k * L);
    const auto bias_int = in.ints<int32_t>(C);
    const auto bf = in.floats(C), mult = in.floats(C);
    if (onednn) {
      const auto s = in.floats(2);
      rq.mode = mbv3::Q8RequantMode::Onednn;
      rq.src_scale = s[0];
      rq.inv_scale = s[1];
    }
    std::vector<uint8_t> lut;
    if (has_lut) lut = in.ints<uint8_t>(256);
    // The binding's preparation of a packed weight: the rows after the header, the zero-point
    // term folded into the bias; no vpdpbusd weights (w8 null) off x86.
    const int64_t Cpad = (C + mbv3::kQ8DwChannelPad - 1) / mbv3::kQ8DwChannelPad * mbv3::kQ8DwChannelPad;
    const int16_t* w16 = packed.data() + mbv3::kQ8DwPackHeader;
    const int16_t* sums = w16 + k * k * Cpad;
    std::vector<int32_t> bias_eff(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) bias_eff[c] = bias_int[c] - sums[c] * x_zp;
    rq.bias_int = bias_eff.data();
    rq.bias_float = bf.data();
    rq.multiplier = mult.data();
    rq.lut = has_lut ? lut.data() : nullptr;
    const int64_t OH = (H + 2 * pad - dil * (k - 1) - 1) / stride + 1, OW = (W + 2 * pad - dil * (k - 1) - 1) / stride + 1;
    std::vector<uint8_t> y(static_cast<size_t>(N * OH * OW * C), 0xA5);  // poison
    const mbv3::Q8DwArgs p{x.data(), w16, nullptr, y.data(), N, C, H, W, OH, OW, Cpad, k, stride, pad, dil, x_zp, rq};
    const int64_t rows = N * OH;
    if (split == 0) {
      const int64_t half = rows / 2 + (rows > 2 ? 1 : 0);
      mbv3::neon::q8_dwconv_act(p, 0, half, 0, C);
      mbv3::neon::q8_dwconv_act(p, half, rows, 0, C);
    } else {
      for (int64_t b = 0; b < N; ++b)
        for (int64_t c0 = 0; c0 < C; c0 += 64) mbv3::neon::q8_dwconv_act(p, b * OH, (b + 1) * OH, c0, std::min(C, c0 + 64));
    }
    out.floats(std::vector<float>(y.begin(), y.end()));
  }
  return 0;
}
