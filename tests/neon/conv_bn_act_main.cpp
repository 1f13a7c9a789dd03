// Runs csrc/conv_bn_act/conv_bn_act_neon.cpp (the file the ARM build ships) on every case in a file.
// Case: int64 N Cin H W Cout OH OW k stride pad act sx_n sx_c sx_h sx_w x_numel, then x (its
// buffer, read through the strides), w [k,k,Cin,Cout], b [Cout].  Output: y [N,OH,OW,Cout].
// With "bf16" (case_io.h) x and w are converted to bf16 and the bf16 kernel runs; "bf16_dot"
// runs it from conv_bn_act_bf16_neon_bf16.cpp (FEAT_BF16: BFDOT; qemu -cpu max).
//
// The bf16 entry point lives in its own unit (conv_bn_act_bf16_neon.cpp, also shipped by the ARM
// build); the harness compiles only <op>_neon.cpp beside this main, so the unit comes in here.
#include "conv_bn_act/conv_bn_act_bf16_neon.cpp"

#include "conv_bn_act/conv_bn_act.h"
#include "case_io.h"

#include <type_traits>

bool g_dot = false;  // "bf16_dot": the neon_bf16 unit's bf16 entry point

template <class T>
std::vector<float> run(mbv3::ConvArgs<T> p, const std::vector<T>& x, const std::vector<T>& w,
                       const std::vector<float>& b) {
  std::vector<T> y(static_cast<size_t>(p.N * p.OH * p.OW * p.Cout));
  const float poison = -12345.f;
  for (auto& v : y) std::memcpy(&v, &poison, sizeof(T));  // (bf16: its low bytes)
  p.x = x.data(); p.w = w.data(); p.b = b.data(); p.y = y.data();
  // Two row ranges, as the threaded binding splits them.
  const int64_t rows = p.N * p.OH, split = rows / 2;
  auto part = [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<T, mbv3::bf16>)
      if (g_dot) return mbv3::neon_bf16::conv_bn_act(p, begin, end);
    mbv3::neon::conv_bn_act(p, begin, end);
  };
  part(0, split);
  part(split, rows);
  if constexpr (std::is_same_v<T, float>) return y;
  else return to_float(y);
}

int main(int argc, char** argv) {
  if (!usage_ok(argc, argv)) return 2;
  const bool bf = bf16_requested(argc, argv);
  g_dot = mode_is(argc, argv, "bf16_dot");
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    mbv3::ConvParams p{};
    p.N = in.i64(); p.Cin = in.i64(); p.H = in.i64(); p.W = in.i64();
    p.Cout = in.i64(); p.OH = in.i64(); p.OW = in.i64();
    p.k = int(in.i64()); p.stride = int(in.i64()); p.pad = int(in.i64());
    p.act = static_cast<mbv3::Act>(in.i64());
    p.sx_n = in.i64(); p.sx_c = in.i64(); p.sx_h = in.i64(); p.sx_w = in.i64();
    auto x = in.floats(in.i64()), w = in.floats(int64_t(p.k) * p.k * p.Cin * p.Cout), b = in.floats(p.Cout);
    if (!bf) {
      out.floats(run(p, x, w, b));
    } else {
      mbv3::ConvParamsBf16 q{};
      q.N = p.N; q.Cin = p.Cin; q.H = p.H; q.W = p.W;
      q.sx_n = p.sx_n; q.sx_c = p.sx_c; q.sx_h = p.sx_h; q.sx_w = p.sx_w;
      q.Cout = p.Cout; q.OH = p.OH; q.OW = p.OW;
      q.k = p.k; q.stride = p.stride; q.pad = p.pad; q.act = p.act;
      out.floats(run(q, to_bf16(x), to_bf16(w), b));
    }
  }
  return 0;
}
