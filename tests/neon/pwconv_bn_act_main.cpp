// Runs csrc/pwconv_bn_act/pwconv_bn_act_neon.cpp (the file the ARM build ships) on every case in a file.
// Case: int64 N Cin Cout HW act has_residual has_scale, then x [N*HW, Cin], w [Cin, Cout],
// b [Cout], residual [N*HW, Cout] if any, in_scale [N, Cin] if any.
#include "pwconv_bn_act/pwconv_bn_act.h"
#include "case_io.h"

int main(int argc, char** argv) {
  if (argc != 3) { std::fprintf(stderr, "usage: %s cases.bin out.bin\n", argv[0]); return 2; }
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    mbv3::PwConvParams p{};
    const int64_t N = in.i64();
    p.K = in.i64(); p.Cout = in.i64(); p.HW = in.i64();
    p.act = static_cast<mbv3::Act>(in.i64());
    const bool has_res = in.i64() != 0, has_scale = in.i64() != 0;
    p.M = N * p.HW; p.ldw = p.Cout;
    auto x = in.floats(p.M * p.K), w = in.floats(p.K * p.Cout), b = in.floats(p.Cout);
    auto r = in.floats(has_res ? p.M * p.Cout : 0), s = in.floats(has_scale ? N * p.K : 0);
    std::vector<float> y(static_cast<size_t>(p.M * p.Cout), -12345.f);
    p.x = x.data(); p.w = w.data(); p.b = b.data(); p.y = y.data();
    p.residual = has_res ? r.data() : nullptr;
    p.in_scale = has_scale ? s.data() : nullptr;
    // Four blocks, as the threaded binding splits them: rows at an odd row, columns at a tile.
    const int64_t nr = mbv3::neon::pwconv_tile().nr;
    const int64_t msplit = p.M / 2 + (p.M > 2 ? 1 : 0), nsplit = p.Cout > nr ? nr : p.Cout;
    mbv3::neon::pwconv_bn_act(p, 0, msplit, 0, nsplit);
    mbv3::neon::pwconv_bn_act(p, msplit, p.M, 0, nsplit);
    mbv3::neon::pwconv_bn_act(p, 0, msplit, nsplit, p.Cout);
    mbv3::neon::pwconv_bn_act(p, msplit, p.M, nsplit, p.Cout);
    out.floats(y);
  }
  return 0;
}
