// Runs csrc/se/se_neon.cpp (the file the ARM build ships) on every case in a file, phase by
// phase as the threaded binding does, each phase split in ranges to exercise offsets.
// Case: int64 N C S HW nhwc w1_by_output w2_by_output chunk, then x ([N,HW,C] or [N,C,HW]),
// w1 ([C,S] if w1_by_output else [S,C]), b1 [S], w2 ([S,C] if w2_by_output else [C,S]), b2 [C].
// Output per case: y (x's layout), then the float32 scale [N,C].
// With "bf16" (case_io.h) x, w1 and w2 are converted to bf16 and the bf16 kernels run (y comes
// back widened; the scale is the kernels' internal float32 one); "bf16_dot" runs them from
// se_neon_bf16.cpp (FEAT_BF16: FC weights read by rows take BFDOT; qemu -cpu max).
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "se/se.h"
#include "case_io.h"

namespace {

bool g_dot = false;  // "bf16_dot": the neon_bf16 unit's entry points
#define MBV3_SE_UNIT(fn)                  \
  template <class... A>                  \
  void fn(const A&... a) {               \
    if (g_dot) mbv3::neon_bf16::fn(a...); \
    else mbv3::neon::fn(a...);           \
  }
MBV3_SE_UNIT(se_pool)
MBV3_SE_UNIT(se_mean)
MBV3_SE_UNIT(se_fc1)
MBV3_SE_UNIT(se_fc2)
MBV3_SE_UNIT(se_apply)
#undef MBV3_SE_UNIT

template <class T>
std::vector<T> as(const std::vector<float>& v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else return to_bf16(v);
}

template <class T>
void run_case(CaseReader& in, CaseWriter& out) {
  mbv3::SeArgs<T> p{};
  p.N = in.i64(); p.C = in.i64(); p.S = in.i64(); p.HW = in.i64(); p.nhwc = in.i64() != 0;
  const bool t1 = in.i64() != 0, t2 = in.i64() != 0;
  const int64_t chunk = in.i64();
  p.chunk = p.nhwc ? chunk : p.HW;  // the NCHW pool sums whole planes
  const auto x = as<T>(in.floats(p.N * p.C * p.HW)), w1 = as<T>(in.floats(p.S * p.C));
  const auto b1 = in.floats(p.S);
  const auto w2 = as<T>(in.floats(p.C * p.S));
  const auto b2 = in.floats(p.C);
  p.w1 = {w1.data(), t1 ? p.S : p.C, t1};
  p.w2 = {w2.data(), t2 ? p.C : p.S, t2};
  p.x = x.data(); p.b1 = b1.data(); p.b2 = b2.data();
  std::vector<T> y(x.size());
  const std::vector<float> poison(y.size(), -12345.f);
  for (size_t i = 0; i < y.size(); ++i) std::memcpy(&y[i], &poison[i], sizeof(T));  // (bf16: its low bytes)
  std::vector<float> scale(static_cast<size_t>(p.N * p.C), -12345.f);
  p.y = y.data();

  const int64_t chunks = mbv3::se_num_chunks(p);
  const int64_t units = p.nhwc ? p.N * chunks : p.N * p.C;
  std::vector<float> part(static_cast<size_t>(p.nhwc ? p.N * chunks * p.C : p.N * p.C), -12345.f);
  se_pool(p, 0, units / 2, part.data());
  se_pool(p, units / 2, units, part.data());
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
      se_mean(p, part.data() + (n0 + j) * (p.nhwc ? chunks : 1) * p.C, mean.data() + j * p.C);
    slices(p.S, [&](int64_t s0, int64_t s1) { se_fc1(p, cnt, mean.data(), h.data() + n0 * p.S, s0, s1); });
    slices(p.C, [&](int64_t c0, int64_t c1) {
      se_fc2(p, cnt, h.data() + n0 * p.S, scale.data() + n0 * p.C, c0, c1);
    });
  }
  const int64_t apply_units = p.nhwc ? p.N * p.HW : p.N * p.C;
  se_apply(p, scale.data(), 0, apply_units / 2);
  se_apply(p, scale.data(), apply_units / 2, apply_units);
  if constexpr (std::is_same_v<T, float>) out.floats(y);
  else out.floats(to_float(y));
  out.floats(scale);
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
