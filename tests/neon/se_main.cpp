// Runs csrc/se_neon.cpp (the file the ARM build ships) on every case in a file, phase by
// phase as the threaded binding does, each phase split in two ranges to exercise offsets.
// Case: int64 N C S HW nhwc w1_by_output w2_by_output chunk, then x ([N,HW,C] or [N,C,HW]),
// w1 ([C,S] if w1_by_output else [S,C]), b1 [S], w2 ([S,C] if w2_by_output else [C,S]), b2 [C].
// Output per case: y (x's layout), then scale [N,C].
#include <vector>

#include "../../csrc/se.h"
#include "case_io.h"

int main(int argc, char** argv) {
  if (argc != 3) { std::fprintf(stderr, "usage: %s cases.bin out.bin\n", argv[0]); return 2; }
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    mbv3::SeParams p{};
    p.N = in.i64(); p.C = in.i64(); p.S = in.i64(); p.HW = in.i64(); p.nhwc = in.i64() != 0;
    const bool t1 = in.i64() != 0, t2 = in.i64() != 0;
    const int64_t chunk = in.i64();
    p.chunk = p.nhwc ? chunk : p.HW;  // the NCHW pool sums whole planes
    auto x = in.floats(p.N * p.C * p.HW), w1 = in.floats(p.S * p.C), b1 = in.floats(p.S);
    auto w2 = in.floats(p.C * p.S), b2 = in.floats(p.C);
    p.w1 = {w1.data(), t1 ? p.S : p.C, t1};
    p.w2 = {w2.data(), t2 ? p.C : p.S, t2};
    p.x = x.data(); p.b1 = b1.data(); p.b2 = b2.data();
    std::vector<float> y(x.size(), -12345.f), scale(static_cast<size_t>(p.N * p.C), -12345.f);
    p.y = y.data();

    const int64_t chunks = mbv3::se_num_chunks(p);
    const int64_t units = p.nhwc ? p.N * chunks : p.N * p.C;
    std::vector<float> part(static_cast<size_t>(p.nhwc ? p.N * chunks * p.C : p.N * p.C), -12345.f);
    mbv3::neon::se_pool(p, 0, units / 2, part.data());
    mbv3::neon::se_pool(p, units / 2, units, part.data());
    std::vector<float> mean(static_cast<size_t>(p.C)), h(static_cast<size_t>(p.S));
    for (int64_t n = 0; n < p.N; ++n) {
      mbv3::neon::se_mean(p, part.data() + n * (p.nhwc ? chunks : 1) * p.C, mean.data());
      mbv3::neon::se_fc1(p, mean.data(), h.data(), 0, p.S / 2);
      mbv3::neon::se_fc1(p, mean.data(), h.data(), p.S / 2, p.S);
      float* sc = scale.data() + n * p.C;
      mbv3::neon::se_fc2(p, h.data(), sc, 0, p.C / 3);
      mbv3::neon::se_fc2(p, h.data(), sc, p.C / 3, p.C);
    }
    const int64_t apply_units = p.nhwc ? p.N * p.HW : p.N * p.C;
    mbv3::neon::se_apply(p, scale.data(), 0, apply_units / 2);
    mbv3::neon::se_apply(p, scale.data(), apply_units / 2, apply_units);
    out.floats(y);
    out.floats(scale);
  }
  return 0;
}
