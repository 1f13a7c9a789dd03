// Runs csrc/pwconv_bn_act/pwconv_bn_act_neon.cpp (the file the ARM build ships) on every case in a file.
// Case: int64 N Cin Cout HW act has_residual has_scale, then x [N*HW, Cin], w [Cin, Cout],
// b [Cout], residual [N*HW, Cout] if any, in_scale [N, Cin] if any.
// With "bf16" (case_io.h) x, w and the residual are converted to bf16 and the bf16 kernel runs;
// with "k_pairs" w is also packed in K pairs and the BFDOT kernel runs (qemu -cpu max); with
// "panels" (float32) w is packed in panels of kPanel columns, which the float kernel reads.
#include "pwconv_bn_act/pwconv_bn_act.h"
#include "case_io.h"

#include <type_traits>

// w [K][Cout] packed as mbv3_fast.ops.pack_weight_k_pairs does: [ceil(K/2)][ldw][2], zero padded.
std::vector<mbv3::bf16> pack_k_pairs(const std::vector<mbv3::bf16>& w, int64_t K, int64_t Cout, int64_t ldw) {
  std::vector<mbv3::bf16> out(static_cast<size_t>((K + 1) / 2 * ldw * 2), mbv3::bf16{0});
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < Cout; ++n) out[static_cast<size_t>((k / 2) * 2 * ldw + 2 * n + k % 2)] = w[k * Cout + n];
  return out;
}

// w [K][Cout] packed as mbv3_fast.ops.pack_pw_weight_panels does: [ceil(Cout/P)][K][P], zero
// padded.  12: not NEON's own width (16), so a panel splits into 8 + 4 and the threads' column
// split (at 16) falls inside one.
constexpr int64_t kPanel = 12;
std::vector<float> pack_panels(const std::vector<float>& w, int64_t K, int64_t Cout) {
  const int64_t P = kPanel;
  std::vector<float> out(static_cast<size_t>((Cout + P - 1) / P * P * K), 0.f);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < Cout; ++n) out[static_cast<size_t>(n / P * P * K + k * P + n % P)] = w[k * Cout + n];
  return out;
}

template <class T>
std::vector<float> run(mbv3::PwConvArgs<T> p, const std::vector<T>& x, const std::vector<T>& w,
                       const std::vector<float>& b, const std::vector<T>& r, const std::vector<float>& s) {
  std::vector<T> y(static_cast<size_t>(p.M * p.Cout));
  const float poison = -12345.f;
  for (auto& v : y) std::memcpy(&v, &poison, sizeof(T));
  p.x = x.data(); p.w = w.data(); p.b = b.data(); p.y = y.data();
  p.residual = r.empty() ? nullptr : r.data();
  p.in_scale = s.empty() ? nullptr : s.data();
  // Four blocks, as the threaded binding splits them: rows at an odd row, columns at a tile.
  const int64_t nr = p.k_pairs ? mbv3::neon_bf16::pwconv_tile_k_pairs().nr : mbv3::neon::pwconv_tile().nr;
  const int64_t msplit = p.M / 2 + (p.M > 2 ? 1 : 0), nsplit = p.Cout > nr ? nr : p.Cout;
  auto kernel = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if constexpr (std::is_same_v<T, mbv3::bf16>) {
      if (p.k_pairs) return mbv3::neon_bf16::pwconv_bn_act_k_pairs(p, m0, m1, n0, n1);
    }
    mbv3::neon::pwconv_bn_act(p, m0, m1, n0, n1);
  };
  kernel(0, msplit, 0, nsplit);
  kernel(msplit, p.M, 0, nsplit);
  kernel(0, msplit, nsplit, p.Cout);
  kernel(msplit, p.M, nsplit, p.Cout);
  if constexpr (std::is_same_v<T, float>) return y;
  else return to_float(y);
}

int main(int argc, char** argv) {
  if (!usage_ok(argc, argv)) return 2;
  const bool bf = bf16_requested(argc, argv), pairs = mode_is(argc, argv, "k_pairs");
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    const int64_t N = in.i64(), K = in.i64(), Cout = in.i64(), HW = in.i64();
    const auto act = static_cast<mbv3::Act>(in.i64());
    const bool has_res = in.i64() != 0, has_scale = in.i64() != 0;
    const int64_t M = N * HW;
    auto x = in.floats(M * K), w = in.floats(K * Cout), b = in.floats(Cout);
    auto r = in.floats(has_res ? M * Cout : 0), s = in.floats(has_scale ? N * K : 0);
    if (!bf) {
      mbv3::PwConvParams p{nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, M, K, Cout, HW, Cout, act};
      if (mode_is(argc, argv, "panels")) p.panel = kPanel;
      out.floats(run(p, x, p.panel ? pack_panels(w, K, Cout) : w, b, r, s));
    } else if (!pairs) {
      mbv3::PwConvParamsBf16 p{nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, M, K, Cout, HW, Cout, act};
      out.floats(run(p, to_bf16(x), to_bf16(w), b, to_bf16(r), s));
    } else {
      const int64_t ldw = mbv3::k_pair_ldw(Cout);
      mbv3::PwConvParamsBf16 p{nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, M, K, Cout, HW, ldw, act};
      p.k_pairs = true;
      out.floats(run(p, to_bf16(x), pack_k_pairs(to_bf16(w), K, Cout, ldw), b, to_bf16(r), s));
    }
  }
  return 0;
}
