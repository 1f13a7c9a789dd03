// Runs csrc/conv_bn_act/conv_bn_act_neon.cpp (the file the ARM build ships) on every case in a file.
// Case: int64 N Cin H W Cout OH OW k stride pad act sx_n sx_c sx_h sx_w x_numel, then x (its
// buffer, read through the strides), w [k,k,Cin,Cout], b [Cout].  Output: y [N,OH,OW,Cout].
#include "conv_bn_act/conv_bn_act.h"
#include "case_io.h"

int main(int argc, char** argv) {
  if (argc != 3) { std::fprintf(stderr, "usage: %s cases.bin out.bin\n", argv[0]); return 2; }
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
    std::vector<float> y(static_cast<size_t>(p.N * p.OH * p.OW * p.Cout), -12345.f);
    p.x = x.data(); p.w = w.data(); p.b = b.data(); p.y = y.data();
    // Two row ranges, as the threaded binding splits them.
    const int64_t rows = p.N * p.OH, split = rows / 2;
    mbv3::neon::conv_bn_act(p, 0, split);
    mbv3::neon::conv_bn_act(p, split, rows);
    out.floats(y);
  }
  return 0;
}
