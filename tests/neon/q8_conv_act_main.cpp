// Runs csrc/q8_conv_act/q8_conv_act_neon.cpp (the file the ARM build ships: the int8 stem conv and
// the quantizer) on every case in a file.
// Case (int64 unless marked float): kind.  kind 0, conv: N Cin Cout H W k stride pad x_zp zp lo hi
// has_lut od (od: the Onednn mode, then float src_scale inv_scale), x uint8 [N, Cin, H, W], the packed weight's int32 words (pack_weight), bias_int [Cout],
// float bias_float [Cout], float multiplier [Cout], lut [256] if any.  Output y [N, OH, OW, Cout]
// as floats.  kind 1, quantizer: n zp, float inv_scale, float x [n]; output q8_quantize's and
// q8_quantize_pixels' (one channel) bytes, 2n floats.
#include "q8_conv_act/q8_conv_act.h"
#include "case_io.h"

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    if (in.i64() == 1) {
      const int64_t n = in.i64();
      const int32_t zp = static_cast<int32_t>(in.i64());
      const float inv = in.floats(1)[0];
      const auto x = in.floats(n);
      std::vector<uint8_t> q(static_cast<size_t>(n));
      std::vector<uint32_t> px(static_cast<size_t>(n));
      mbv3::neon::q8_quantize(x.data(), q.data(), n, inv, zp);
      mbv3::neon::q8_quantize_pixels(x.data(), n, 1, px.data(), n, inv, zp);
      std::vector<float> o(q.begin(), q.end());
      for (uint32_t v : px) o.push_back(static_cast<float>(v));
      out.floats(o);
      continue;
    }
    const int64_t N = in.i64(), Cin = in.i64(), Cout = in.i64(), H = in.i64(), W = in.i64();
    const int k = static_cast<int>(in.i64()), stride = static_cast<int>(in.i64()), pad = static_cast<int>(in.i64());
    const int32_t x_zp = static_cast<int32_t>(in.i64());
    mbv3::Q8Requant rq{};
    rq.zp = static_cast<int32_t>(in.i64());
    rq.lo = static_cast<int32_t>(in.i64());
    rq.hi = static_cast<int32_t>(in.i64());
    const bool has_lut = in.i64() != 0;
    if (in.i64() != 0) {
      const auto sc = in.floats(2);
      rq.mode = mbv3::Q8RequantMode::Onednn;
      rq.src_scale = sc[0];
      rq.inv_scale = sc[1];
    }
    const auto x = in.ints<uint8_t>(N * Cin * H * W);
    const int64_t Cin4 = (Cin + 3) / 4 * 4, CoutPad = (Cout + 15) / 16 * 16;
    const int64_t words = mbv3::kQ8ConvPackHeader + CoutPad + CoutPad * k * k * Cin4 / 4;
    const int64_t per = Cout * k * k;
    const auto packed = in.ints<int32_t>((words + per - 1) / per * per);
    auto bias_int = in.ints<int32_t>(Cout);
    const auto bf = in.floats(Cout), mult = in.floats(Cout);
    std::vector<uint8_t> lut;
    if (has_lut) lut = in.ints<uint8_t>(256);
    // The binding's preparation: weight sums folded into the bias, x in NHWC with Cin padded to 4
    // and the border padded with x_zp.
    const int32_t* sums = packed.data() + mbv3::kQ8ConvPackHeader;
    for (int64_t c = 0; c < Cout; ++c) bias_int[c] -= sums[c] * x_zp;
    const int64_t Hp = H + 2 * pad, Wp = W + 2 * pad;
    std::vector<uint8_t> x4(static_cast<size_t>(N * Hp * Wp * Cin4), static_cast<uint8_t>(x_zp));
    for (int64_t b = 0; b < N; ++b)
      for (int64_t c = 0; c < Cin4; ++c)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t w = 0; w < W; ++w)
            x4[((b * Hp + h + pad) * Wp + w + pad) * Cin4 + c] = c < Cin ? x[((b * Cin + c) * H + h) * W + w] : 0;
    rq.bias_int = bias_int.data();
    rq.bias_float = bf.data();
    rq.multiplier = mult.data();
    rq.lut = has_lut ? lut.data() : nullptr;
    const int64_t OH = (Hp - k) / stride + 1, OW = (Wp - k) / stride + 1;
    std::vector<uint8_t> y(static_cast<size_t>(N * OH * OW * Cout), 0xA5);  // poison
    const mbv3::Q8ConvArgs p{x4.data(), reinterpret_cast<const int8_t*>(sums + CoutPad), y.data(), N, Cin4, Hp, Wp,
                             Cout, CoutPad, OH, OW, Hp * Wp * Cin4, 1, Wp * Cin4, Cin4, k, stride, 0, x_zp, rq};
    // Two calls, as threads split the output rows.
    const int64_t rows = N * OH, split = rows / 2 + (rows > 2 ? 1 : 0);
    mbv3::neon::q8_conv_act(p, 0, split);
    mbv3::neon::q8_conv_act(p, split, rows);
    out.floats(std::vector<float>(y.begin(), y.end()));
  }
  return 0;
}
