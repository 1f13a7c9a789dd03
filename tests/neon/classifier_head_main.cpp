// Runs csrc/classifier_head/classifier_head_neon.cpp (the file the ARM build ships) on every case in a file,
// phase by phase as the threaded binding does, each phase split in ranges to exercise offsets.
// Case: int64 N C HW nhwc hidden classes act t1 t2, then x ([N,HW,C] or [N,C,HW]),
// w1 ([C,hidden] if t1 else [hidden,C]), b1 [hidden], w2 ([hidden,classes] if t2 else
// [classes,hidden]), b2 [classes].  Output per case: logits [N, classes].
#include <algorithm>
#include <vector>

#include "classifier_head/classifier_head.h"
#include "case_io.h"

namespace {
// out[n, :] for all samples, blocks of up to kHeadSamples samples x three output slices
// (unaligned boundaries on purpose).
void linear(const mbv3::FcMatrix& w, const float* b, mbv3::Act act, int64_t N, const float* in,
            int64_t nin, int64_t nout, float* out) {
  const int64_t nb = std::min(N, mbv3::kHeadSamples), parts = std::min<int64_t>(nout, 3);
  for (int64_t n0 = 0; n0 < N; n0 += nb)
    for (int64_t k = 0; k < parts; ++k)
      mbv3::neon::head_linear(w, b, act, std::min(nb, N - n0), in + n0 * nin, nin, k * nout / parts,
                              (k + 1) * nout / parts, out + n0 * nout, nout);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) { std::fprintf(stderr, "usage: %s cases.bin out.bin\n", argv[0]); return 2; }
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    const int64_t N = in.i64(), C = in.i64(), HW = in.i64();
    const bool nhwc = in.i64() != 0;
    const int64_t hidden = in.i64(), classes = in.i64();
    const auto act = static_cast<mbv3::Act>(in.i64());
    const bool t1 = in.i64() != 0, t2 = in.i64() != 0;
    auto x = in.floats(N * C * HW), w1 = in.floats(hidden * C), b1 = in.floats(hidden);
    auto w2 = in.floats(classes * hidden), b2 = in.floats(classes);
    const mbv3::FcMatrix m1{w1.data(), t1 ? hidden : C, t1}, m2{w2.data(), t2 ? classes : hidden, t2};
    const mbv3::HeadPoolParams p{x.data(), C, HW, nhwc};
    std::vector<float> pooled(static_cast<size_t>(N * C), -12345.f), hid(static_cast<size_t>(N * hidden), -12345.f);
    std::vector<float> y(static_cast<size_t>(N * classes), -12345.f);
    mbv3::neon::head_pool(p, 0, N / 2, pooled.data());
    mbv3::neon::head_pool(p, N / 2, N, pooled.data());
    linear(m1, b1.data(), act, N, pooled.data(), C, hidden, hid.data());
    linear(m2, b2.data(), mbv3::Act::None, N, hid.data(), hidden, classes, y.data());
    out.floats(y);
  }
  return 0;
}
