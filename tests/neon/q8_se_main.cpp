// Runs csrc/q8_se/q8_se_neon.cpp (the file the ARM build ships: the int8 GEMV of q8_se and
// q8_classifier_head, and the pool sums) on every case in a file.
// Case (int64 unless marked float): kind.  kind 0, GEMV: N K Cout x_zp zp lo hi has_lut dequant
// yf_zp, float yf_scale, x [N*K], w [Cout*K], bias_int [Cout], float bias_float [Cout], float
// multiplier [Cout], lut [256] if any.  Output y [N*Cout] as floats (uint8 values, or the
// dequantized floats).  kind 1, pool sums: HW C nhwc, x [HW*C]; output sums [C] as floats.
#include "q8_se/q8_se.h"
#include "case_io.h"

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    if (in.i64() == 1) {
      const int64_t HW = in.i64(), C = in.i64();
      const bool nhwc = in.i64() != 0;
      const auto x = in.ints<uint8_t>(HW * C);
      std::vector<int32_t> sums(static_cast<size_t>(C), -1);
      mbv3::neon::q8_pool_sums(x.data(), HW, C, nhwc, sums.data());
      out.floats(std::vector<float>(sums.begin(), sums.end()));
      continue;
    }
    const int64_t N = in.i64(), K = in.i64(), Cout = in.i64();
    const int32_t x_zp = static_cast<int32_t>(in.i64());
    mbv3::Q8Requant rq{};
    rq.zp = static_cast<int32_t>(in.i64());
    rq.lo = static_cast<int32_t>(in.i64());
    rq.hi = static_cast<int32_t>(in.i64());
    const bool has_lut = in.i64() != 0, dequant = in.i64() != 0;
    const int32_t yf_zp = static_cast<int32_t>(in.i64());
    const float yf_scale = in.floats(1)[0];
    const auto x = in.ints<uint8_t>(N * K);
    const auto w = in.ints<int8_t>(Cout * K);
    const auto bias_int = in.ints<int32_t>(Cout);
    const auto bf = in.floats(Cout), mult = in.floats(Cout);
    std::vector<uint8_t> lut;
    if (has_lut) lut = in.ints<uint8_t>(256);
    rq.bias_int = bias_int.data();
    rq.bias_float = bf.data();
    rq.multiplier = mult.data();
    rq.lut = has_lut ? lut.data() : nullptr;
    std::vector<uint8_t> y(static_cast<size_t>(N * Cout), 0xA5);  // poison
    std::vector<float> yf(static_cast<size_t>(N * Cout), -1.f);
    const mbv3::Q8Fc p{x.data(), w.data(), N, K, Cout, x_zp, rq, y.data(), dequant ? yf.data() : nullptr,
                       yf_zp, yf_scale};
    // Two calls, as the threaded binding splits the outputs: at 16.
    const int64_t split = Cout > 16 ? 16 : Cout;
    mbv3::neon::q8_fc(p, 0, split);
    mbv3::neon::q8_fc(p, split, Cout);
    out.floats(dequant ? yf : std::vector<float>(y.begin(), y.end()));
  }
  return 0;
}
