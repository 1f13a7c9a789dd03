// torch binding of mbv3::classifier_head: schema, input checks, threading, ISA choice.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "classifier_head.h"
#include "common/isa_dispatch.h"
#include "common/cpu_ops.h"
#include "common/op_utils.h"

namespace mbv3 {
namespace {

constexpr int64_t kMinTaskMacs = 65536;  // below this a thread's wake-up costs more than it saves
constexpr int64_t kSliceMacs = 32768;    // a slice of the outputs keeps at least this much work
constexpr int64_t kMaxSlices = 16;

// out[n, :] = act(W . in[n, :] + b) for all N samples, split by parallel_fc (each thread
// streams its own contiguous weight rows).  W: float32 or bf16; in, out: float32.
template <class T>
void linear(const FcMatrixT<T>& w, const float* b, Act act, int64_t N, const float* in, int64_t nin,
            int64_t nout, float* out) {
  auto* fn = MBV3_ISA_SELECT_NEON_BF16_AS(HeadLinearFn<T>, head_linear, current_isa());
  parallel_fc(N, std::min(N, kHeadSamples), nout, nin, w.panel, kSliceMacs, kMaxSlices, kMinTaskMacs,
              [&](int64_t n0, int64_t cnt, int64_t o0, int64_t o1) {
                fn(w, b, act, cnt, in + n0 * nin, nin, o0, o1, out + n0 * nout, nout);
              });
}

struct HeadShape {
  int64_t N, C, hidden, classes;
};

// The op's argument checks (metadata only), for every device: the CPU op, its fake kernel and the
// CUDA path (through mbv3::_check_classifier_head).
HeadShape check_head(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                     const at::Tensor& b2) {
  constexpr const char* op = "classifier_head";
  check_x(x, op, "N, C, H, W");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK_VALUE(C >= 1 && H >= 1 && W >= 1, op, ": x must have C, H, W >= 1, got ", x.sizes());
  check_param(x, w1, "w1");
  check_param(x, b1, "b1");
  check_param(x, w2, "w2");
  check_param(x, b2, "b2");
  // Either weight may be packed in panels (3-D, CPU only): its rows are then its bias's length.
  auto rows = [&](const at::Tensor& w, const at::Tensor& b, const char* bname, const char* what) {
    if (w.dim() != 3) return w.dim() == 2 ? w.size(0) : int64_t(-1);
    return fc_panel_outputs(b, op, bname, what);
  };
  const int64_t hidden = rows(w1, b1, "b1", "hidden");
  if (!check_fc_panels(x, w1, hidden, C, op, "w1", "hidden", "C"))
    TORCH_CHECK_VALUE(w1.dim() == 2 && w1.size(1) == C && hidden >= 1, op,
                      ": w1 must be [hidden, C] with C = ", C, " (x's channels), got ", w1.sizes());
  TORCH_CHECK_VALUE(b1.dim() == 1 && b1.size(0) == hidden, op, ": b1 must be [hidden] with hidden = ",
                    hidden, " (w1's rows), got ", b1.sizes());
  const int64_t classes = rows(w2, b2, "b2", "classes");
  if (!check_fc_panels(x, w2, classes, hidden, op, "w2", "classes", "hidden"))
    TORCH_CHECK_VALUE(w2.dim() == 2 && w2.size(1) == hidden && classes >= 1, op,
                      ": w2 must be [classes, hidden] with hidden = ", hidden, ", got ", w2.sizes());
  TORCH_CHECK_VALUE(b2.dim() == 1 && b2.size(0) == classes, op, ": b2 must be [classes] with classes = ",
                    classes, " (w2's rows), got ", b2.sizes());
  return {N, C, hidden, classes};
}

// [N, C, hidden, classes]
std::vector<int64_t> check_head_op(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                                   const at::Tensor& w2, const at::Tensor& b2, c10::string_view activation) {
  const HeadShape g = check_head(x, w1, b1, w2, b2);
  parse_activation(activation, "classifier_head");
  return {g.N, g.C, g.hidden, g.classes};
}

}  // namespace

// AVX2: one block of outputs (kBlockVecs = 8 vectors of 8) per panel, measured faster than rows
// (README, "Design notes").  Not measured on the other paths, which keep the rows.
int64_t head_panel_rows(Isa isa) { return isa == Isa::Avx2 ? 64 : 0; }

at::Tensor classifier_head_cpu(const at::Tensor& x_in, const at::Tensor& w1, const at::Tensor& b1,
                               const at::Tensor& w2, const at::Tensor& b2, c10::string_view activation) {
  return classifier_head_cpu(x_in, w1, b1, w2, b2, parse_activation(activation, "classifier_head"));
}

at::Tensor classifier_head_cpu(const at::Tensor& x_in, const at::Tensor& w1, const at::Tensor& b1,
                               const at::Tensor& w2, const at::Tensor& b2, Act act) {
  check_cpu_x_dtype(x_in);
  const HeadShape g = check_head(x_in, w1, b1, w2, b2);
  const int64_t N = g.N, C = g.C, H = x_in.size(2), W = x_in.size(3), hidden = g.hidden, classes = g.classes;

  // bf16 x: the weights are streamed as bf16 too; the biases may be either (read as float32).
  check_cpu_streamed(x_in, w1, "w1");
  check_cpu_streamed(x_in, w2, "w2");

  at::Tensor out = at::empty({N, classes}, x_in.options());
  if (debug_poison_outputs()) out.fill_(std::numeric_limits<float>::quiet_NaN());
  if (N == 0) return out;
  // Dense NHWC or NCHW is read in place; anything else becomes NCHW.
  const bool nhwc = wants_channels_last(x_in);
  const at::Tensor x = nhwc ? x_in : x_in.contiguous();
  with_cpu_dtype(x, [&](auto t) {
    using T = decltype(t);
    constexpr bool kIsFloat = std::is_same_v<T, float>;
    at::Tensor h1, h2, hb1, hb2;
    const FcMatrixT<T> m1 = fc_matrix<T>(w1, h1), m2 = fc_matrix<T>(w2, h2);
    const float* bias1 = dense_1d(b1, hb1);
    const float* bias2 = dense_1d(b2, hb2);

    // float32 scratch: pooled [N][C], hidden [N][hidden] and, for bf16, the float32 logits
    // [N][classes] (rounded once into out at the end).
    at::Tensor scratch = at::empty({N * (C + hidden + (kIsFloat ? 0 : classes))}, x.options().dtype(at::kFloat));
    float* pooled = scratch.data_ptr<float>();
    float* hid = pooled + N * C;
    float* logits = hid + N * hidden;
    if constexpr (kIsFloat) logits = out.data_ptr<float>();
    const HeadPoolArgs<T> pp{data_as<T>(x), C, H * W, nhwc};
    auto* pool = MBV3_ISA_SELECT_NEON_BF16_AS(HeadPoolFn<T>, head_pool, current_isa());
    parallel_for(0, N, parallel_grain(C * H * W, kMinTaskMacs),
                     [&](int64_t b, int64_t e) { pool(pp, b, e, pooled); });
    linear(m1, bias1, act, N, pooled, C, hidden, hid);
    linear(m2, bias2, Act::None, N, hid, hidden, classes, logits);
    if constexpr (!kIsFloat) out.copy_(scratch.narrow(0, N * (C + hidden), N * classes).view({N, classes}));
  });
  return out;
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("classifier_head(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, str activation) -> Tensor");
  // The argument checks alone, on any device (fake and CUDA paths): [N, C, hidden, classes].
  m.def("_check_classifier_head(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, str activation) "
        "-> int[]",
        &mbv3::check_head_op);
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) {
  using Fn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, c10::string_view);
  m.impl("classifier_head", static_cast<Fn>(&mbv3::classifier_head_cpu));
}
