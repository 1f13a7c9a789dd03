// Runs csrc/classifier_head/classifier_head_neon.cpp (the file the ARM build ships) on every case in a file,
// phase by phase as the threaded binding does, each phase split in ranges to exercise offsets.
// Case: int64 N C HW nhwc hidden classes act t1 t2, then x ([N,HW,C] or [N,C,HW]),
// w1 ([C,hidden] if t1 == 1, [ceil(hidden/P),C,P] panels if t1 == -P, else [hidden,C]), b1
// [hidden], w2 (likewise with t2), b2 [classes].  Output per case: the float32 logits [N, classes].
// With "bf16" (case_io.h) x, w1 and w2 are converted to bf16 and the bf16 kernels run (the
// logits stay the kernels' float32 ones; the op rounds them once, the test does the same);
// "bf16_dot" runs them from classifier_head_neon_bf16.cpp (FEAT_BF16: FC weights read by rows
// take BFDOT; qemu -cpu max).
#include <algorithm>
#include <type_traits>
#include <vector>

#include "classifier_head/classifier_head.h"
#include "case_io.h"

namespace {

bool g_dot = false;  // "bf16_dot": the neon_bf16 unit's entry points
template <class... A>
void head_pool(const A&... a) {
  if (g_dot) mbv3::neon_bf16::head_pool(a...);
  else mbv3::neon::head_pool(a...);
}
template <class... A>
void head_linear(const A&... a) {
  if (g_dot) mbv3::neon_bf16::head_linear(a...);
  else mbv3::neon::head_linear(a...);
}

template <class T>
std::vector<T> as(const std::vector<float>& v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else return to_bf16(v);
}

// out[n, :] for all samples, blocks of up to kHeadSamples samples x three output slices
// (unaligned boundaries on purpose).
template <class T>
void linear(const mbv3::FcMatrixT<T>& w, const float* b, mbv3::Act act, int64_t N, const float* in,
            int64_t nin, int64_t nout, float* out) {
  const int64_t nb = std::min(N, mbv3::kHeadSamples), parts = std::min<int64_t>(nout, 3);
  for (int64_t n0 = 0; n0 < N; n0 += nb)
    for (int64_t k = 0; k < parts; ++k)
      head_linear(w, b, act, std::min(nb, N - n0), in + n0 * nin, nin, k * nout / parts, (k + 1) * nout / parts,
                  out + n0 * nout, nout);
}

template <class T>
void run_case(CaseReader& in, CaseWriter& out) {
  const int64_t N = in.i64(), C = in.i64(), HW = in.i64();
  const bool nhwc = in.i64() != 0;
  const int64_t hidden = in.i64(), classes = in.i64();
  const auto act = static_cast<mbv3::Act>(in.i64());
  const int64_t t1 = in.i64(), t2 = in.i64();
  // Stored elements of an [out, in] weight in layout t: panels hold ceil(out / P) * P rows.
  auto stored = [](int64_t t, int64_t out, int64_t nin) { return (t < 0 ? (out - t - 1) / -t * -t : out) * nin; };
  auto matrix = [](const std::vector<T>& w, int64_t t, int64_t out, int64_t nin) -> mbv3::FcMatrixT<T> {
    if (t < 0) return {w.data(), -t, true, -t};
    return {w.data(), t ? out : nin, t != 0};
  };
  const auto x = as<T>(in.floats(N * C * HW)), w1 = as<T>(in.floats(stored(t1, hidden, C)));
  const auto b1 = in.floats(hidden);
  const auto w2 = as<T>(in.floats(stored(t2, classes, hidden)));
  const auto b2 = in.floats(classes);
  const mbv3::FcMatrixT<T> m1 = matrix(w1, t1, hidden, C), m2 = matrix(w2, t2, classes, hidden);
  const mbv3::HeadPoolArgs<T> p{x.data(), C, HW, nhwc};
  std::vector<float> pooled(static_cast<size_t>(N * C), -12345.f), hid(static_cast<size_t>(N * hidden), -12345.f);
  std::vector<float> y(static_cast<size_t>(N * classes), -12345.f);
  head_pool(p, 0, N / 2, pooled.data());
  head_pool(p, N / 2, N, pooled.data());
  linear(m1, b1.data(), act, N, pooled.data(), C, hidden, hid.data());
  linear(m2, b2.data(), mbv3::Act::None, N, hid.data(), hidden, classes, y.data());
  out.floats(y);
}

}  // namespace

int main(int argc, char** argv) {
  if (!usage_ok(argc, argv)) return 2;
  const bool bf = bf16_requested(argc, argv);
  g_dot = mode_is(argc, argv, "bf16_dot");
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    if (bf) run_case<mbv3::bf16>(in, out);
    else run_case<float>(in, out);
  }
  return 0;
}
