// Runs csrc/dwconv_bn_act/dwconv_bn_act_neon.cpp (the file the ARM build ships) on every case in a file.
// Case: int64 N C H W OH OW k stride pad dil act, then x [N,H,W,C], w [k*k,C], b [C].
// With "bf16" (case_io.h) x and w are converted to bf16 and the bf16 kernel runs.
#include "dwconv_bn_act/dwconv_bn_act.h"
#include "case_io.h"

template <class T>
std::vector<float> run(mbv3::DwConvArgs<T> p, const std::vector<T>& x, const std::vector<T>& w,
                       const std::vector<float>& b) {
  std::vector<T> y(static_cast<size_t>(p.N * p.OH * p.OW * p.C));
  std::vector<float> poison(y.size(), -12345.f);
  for (size_t i = 0; i < y.size(); ++i) std::memcpy(&y[i], &poison[i], sizeof(T));  // (bf16: its low bytes)
  p.x = x.data(); p.w = w.data(); p.b = b.data(); p.y = y.data();
  p.weights_finite = mbv3::all_finite(p.w, int64_t(p.k) * p.k * p.C);
  // Two channel ranges, as the threaded binding splits them, to exercise c_begin > 0.
  const int64_t split = p.C > 64 ? 64 : p.C;
  mbv3::neon::dwconv_bn_act(p, 0, p.N * p.OH, 0, split);
  if (split < p.C) mbv3::neon::dwconv_bn_act(p, 0, p.N * p.OH, split, p.C);
  if constexpr (std::is_same_v<T, float>) return y;
  else return to_float(y);
}

int main(int argc, char** argv) {
  if (!usage_ok(argc, argv)) return 2;
  const bool bf = bf16_requested(argc, argv);
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    mbv3::DwConvParams p{};
    p.N = in.i64(); p.C = in.i64(); p.H = in.i64(); p.W = in.i64(); p.OH = in.i64(); p.OW = in.i64();
    p.k = int(in.i64()); p.stride = int(in.i64()); p.pad = int(in.i64()); p.dil = int(in.i64());
    p.act = static_cast<mbv3::Act>(in.i64());
    auto x = in.floats(p.N * p.H * p.W * p.C), w = in.floats(int64_t(p.k) * p.k * p.C), b = in.floats(p.C);
    if (!bf) {
      out.floats(run(p, x, w, b));
    } else {
      mbv3::DwConvParamsBf16 q{};
      q.N = p.N; q.C = p.C; q.H = p.H; q.W = p.W; q.OH = p.OH; q.OW = p.OW;
      q.k = p.k; q.stride = p.stride; q.pad = p.pad; q.dil = p.dil; q.act = p.act;
      out.floats(run(q, to_bf16(x), to_bf16(w), b));
    }
  }
  return 0;
}
