// Runs csrc/dwconv_bn_act/dwconv_bn_act_neon.cpp (the file the ARM build ships) on every case in a file.
// Case: int64 N C H W OH OW k stride pad dil act, then x [N,H,W,C], w [k*k,C], b [C].
#include "dwconv_bn_act/dwconv_bn_act.h"
#include "case_io.h"

int main(int argc, char** argv) {
  if (argc != 3) { std::fprintf(stderr, "usage: %s cases.bin out.bin\n", argv[0]); return 2; }
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    mbv3::DwConvParams p{};
    p.N = in.i64(); p.C = in.i64(); p.H = in.i64(); p.W = in.i64(); p.OH = in.i64(); p.OW = in.i64();
    p.k = int(in.i64()); p.stride = int(in.i64()); p.pad = int(in.i64()); p.dil = int(in.i64());
    p.act = static_cast<mbv3::Act>(in.i64());
    auto x = in.floats(p.N * p.H * p.W * p.C), w = in.floats(int64_t(p.k) * p.k * p.C), b = in.floats(p.C);
    std::vector<float> y(static_cast<size_t>(p.N * p.OH * p.OW * p.C), -12345.f);
    p.x = x.data(); p.w = w.data(); p.b = b.data(); p.y = y.data();
    // Two channel ranges, as the threaded binding splits them, to exercise c_begin > 0.
    const int64_t split = p.C > 64 ? 64 : p.C;
    mbv3::neon::dwconv_bn_act(p, 0, p.N * p.OH, 0, split);
    if (split < p.C) mbv3::neon::dwconv_bn_act(p, 0, p.N * p.OH, split, p.C);
    out.floats(y);
  }
  return 0;
}
