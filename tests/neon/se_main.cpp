// Runs csrc/se/se_neon.cpp (the file the ARM build ships) on every case in a file, phase by
// phase as the threaded binding does, each phase split in ranges to exercise offsets.
// Case: int64 N C S HW nhwc w1_by_output w2_by_output chunk, then x ([N,HW,C] or [N,C,HW]),
// w1 ([C,S] if w1_by_output else [S,C]), b1 [S], w2 ([S,C] if w2_by_output else [C,S]), b2 [C].
// Output per case: y (x's layout), then scale [N,C].
#include <algorithm>
#include <vector>

#include "se/se.h"
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
    // FCs on blocks of up to kSeFcSamples samples, each in up to three slices of its outputs
    // (unaligned boundaries on purpose).
    const int64_t nb = std::min(p.N, mbv3::kSeFcSamples);
    std::vector<float> mean(static_cast<size_t>(nb * p.C)), h(static_cast<size_t>(p.N * p.S));
    auto slices = [](int64_t outs, auto&& body) {
      const int64_t parts = outs < 3 ? outs : 3;
      for (int64_t k = 0; k < parts; ++k) body(k * outs / parts, (k + 1) * outs / parts);
    };
    for (int64_t n0 = 0; n0 < p.N; n0 += nb) {
      const int64_t cnt = std::min(nb, p.N - n0);
      for (int64_t j = 0; j < cnt; ++j)
        mbv3::neon::se_mean(p, part.data() + (n0 + j) * (p.nhwc ? chunks : 1) * p.C, mean.data() + j * p.C);
      slices(p.S, [&](int64_t s0, int64_t s1) { mbv3::neon::se_fc1(p, cnt, mean.data(), h.data() + n0 * p.S, s0, s1); });
      slices(p.C, [&](int64_t c0, int64_t c1) {
        mbv3::neon::se_fc2(p, cnt, h.data() + n0 * p.S, scale.data() + n0 * p.C, c0, c1);
      });
    }
    const int64_t apply_units = p.nhwc ? p.N * p.HW : p.N * p.C;
    mbv3::neon::se_apply(p, scale.data(), 0, apply_units / 2);
    mbv3::neon::se_apply(p, scale.data(), apply_units / 2, apply_units);
    out.floats(y);
    out.floats(scale);
  }
  return 0;
}
