// torch binding of mbv3::se / mbv3::se_scale: schemas, input checks, layout, threading, ISA.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>
#include <type_traits>
#include <vector>

#include "common/isa_dispatch.h"
#include "common/cpu_ops.h"
#include "common/op_utils.h"
#include "se.h"

namespace mbv3 {
namespace {

// Work split.  A thread's task is at least kMinTaskElems elements of x (or kMinTaskMacs FC
// multiply-adds), so the small SE layers of MobileNetV3 at batch 1 run on the calling thread
// (waking a pool thread costs µs) and the larger ones split evenly.  The NHWC pool reads x in
// pixel chunks of about kChunkElems elements (at most kChunkMaxPixels pixels), each chunk
// writing one row of partial sums; the FCs run on blocks of samples, cut into slices of their
// outputs when there are few blocks (parallel_fc).  Pool chunks depend on the shape only and every FC output
// is one unit's whole dot product, so the result is the same for every thread count.
constexpr int64_t kMinTaskElems = 32768;
constexpr int64_t kMinTaskMacs = 32768;
constexpr int64_t kChunkElems = 16384;
constexpr int64_t kChunkMaxPixels = 256;  // bounds each partial sum's chain of additions
constexpr int64_t kFcSliceMacs = 32768;
constexpr int64_t kFcMaxSlices = 8;

struct Checked {
  int64_t N, C, H, W, S;
};

// The op's argument checks (metadata only), for every device: the CPU op, its fake kernel and the
// CUDA path (through mbv3::_check_se).
Checked check_inputs(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                     const at::Tensor& w2, const at::Tensor& b2, const char* op) {
  check_x(x, op, "N, C, H, W");
  Checked k{x.size(0), x.size(1), x.size(2), x.size(3), 0};
  TORCH_CHECK_VALUE(k.C >= 1 && k.H >= 1 && k.W >= 1, op, ": x must have C, H, W >= 1, got ",
                    x.sizes());
  check_param(x, w1, "w1");
  check_param(x, b1, "b1");
  check_param(x, w2, "w2");
  check_param(x, b2, "b2");
  int64_t c1 = 0, r2 = 0, c2 = 0;
  if (w1.dim() == 3) {  // panels: S is b1's length
    k.S = fc_panel_outputs(b1, op, "b1", "S");
    check_fc_panels(x, w1, k.S, k.C, op, "w1", "S", "C");
  } else {
    TORCH_CHECK_VALUE(matrix_shape(w1, k.S, c1) && c1 == k.C && k.S >= 1, op,
                      ": w1 must be [S, C] or [S, C, 1, 1] with C = ", k.C,
                      " (x's channels) and S >= 1, got ", w1.sizes());
  }
  TORCH_CHECK_VALUE(b1.dim() == 1 && b1.size(0) == k.S, op, ": b1 must be [S] with S = ", k.S,
                    " (w1's rows), got ", b1.sizes());
  if (!check_fc_panels(x, w2, k.C, k.S, op, "w2", "C", "S"))
    TORCH_CHECK_VALUE(matrix_shape(w2, r2, c2) && r2 == k.C && c2 == k.S, op,
                      ": w2 must be [C, S] or [C, S, 1, 1] with C = ", k.C, ", S = ", k.S,
                      ", got ", w2.sizes());
  TORCH_CHECK_VALUE(b2.dim() == 1 && b2.size(0) == k.C, op, ": b2 must be [C] with C = ", k.C,
                    ", got ", b2.sizes());
  return k;
}

// [N, C, H, W, S]; `scale_only` names se_scale in messages.
std::vector<int64_t> check_se_op(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                                 const at::Tensor& w2, const at::Tensor& b2, bool scale_only) {
  const Checked k = check_inputs(x, w1, b1, w2, b2, scale_only ? "se_scale" : "se");
  return {k.N, k.C, k.H, k.W, k.S};
}

// Pool -> means -> FC1 -> FC2 into float32 scale [N][C]; then (when p.y) y = x * scale.
template <class T>
void run_se(SeArgs<T>& p, float* scale) {
  const Isa isa = current_isa();
  auto* pool = MBV3_ISA_SELECT_NEON_BF16_AS(SePoolFn<T>, se_pool, isa);
  auto* mean_fn = MBV3_ISA_SELECT_NEON_BF16_AS(SeMeanFn<T>, se_mean, isa);
  auto* fc1 = MBV3_ISA_SELECT_NEON_BF16_AS(SeFcFn<T>, se_fc1, isa);
  auto* fc2 = MBV3_ISA_SELECT_NEON_BF16_AS(SeFcFn<T>, se_fc2, isa);
  const int64_t N = p.N, C = p.C, S = p.S, HW = p.HW;
  p.chunk = p.nhwc ? std::min({HW, kChunkMaxPixels, std::max<int64_t>(1, kChunkElems / C)}) : HW;
  const int64_t chunks = se_num_chunks(p);  // 1 for NCHW

  // Scratch: pool partial sums [N][chunks][C], means [N][C], hidden [N][S].
  std::unique_ptr<float[]> scratch(new float[N * chunks * C + N * C + N * S]);
  float* part = scratch.get();
  float* mean = part + N * chunks * C;
  float* hid = mean + N * C;

  if (p.nhwc) {
    parallel_for(0, N * chunks, parallel_grain(p.chunk * C, kMinTaskElems), [&](int64_t b, int64_t e) {
      pool(p, b, e, part);
    });
  } else {
    parallel_for(0, N * C, parallel_grain(HW, kMinTaskElems), [&](int64_t b, int64_t e) {
      pool(p, b, e, part);
    });
  }
  parallel_for(0, N, parallel_grain(chunks * C, kMinTaskElems), [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) mean_fn(p, part + n * chunks * C, mean + n * C);
  });

  // The FCs: see parallel_fc.
  const int64_t nb = std::min(N, kSeFcSamples);
  auto fc = [&](int64_t outs, int64_t ins, int64_t panel, auto&& body) {
    parallel_fc(N, nb, outs, ins, panel, kFcSliceMacs, kFcMaxSlices, kMinTaskMacs, body);
  };
  fc(S, C, p.w1.panel, [&](int64_t n0, int64_t cnt, int64_t s0, int64_t s1) { fc1(p, cnt, mean + n0 * C, hid + n0 * S, s0, s1); });
  fc(C, S, p.w2.panel, [&](int64_t n0, int64_t cnt, int64_t c0, int64_t c1) { fc2(p, cnt, hid + n0 * S, scale + n0 * C, c0, c1); });

  if (p.y) {
    auto* apply = MBV3_ISA_SELECT_NEON_BF16_AS(SeApplyFn<T>, se_apply, isa);
    const int64_t units = p.nhwc ? N * HW : N * C, per_unit = p.nhwc ? C : HW;
    parallel_for(0, units, parallel_grain(per_unit, kMinTaskElems), [&](int64_t b, int64_t e) {
      apply(p, scale, b, e);
    });
  }
}

// What se_impl returns: y = x * scale (se), the scale in x's dtype (se_scale), or the scale as
// float32 holding the values se_scale returns (se_scale_float_cpu).
enum class SeOut { Apply, Scale, ScaleFloat };

at::Tensor se_impl(const at::Tensor& x_in, const at::Tensor& w1, const at::Tensor& b1,
                   const at::Tensor& w2, const at::Tensor& b2, SeOut what) {
  const bool scale_only = what != SeOut::Apply;
  const char* op = scale_only ? "se_scale" : "se";
  check_cpu_x_dtype(x_in);
  const Checked k = check_inputs(x_in, w1, b1, w2, b2, op);
  // bf16 x: the weights are streamed as bf16 too; the biases may be either (read as float32).
  check_cpu_streamed(x_in, w1, "w1");
  check_cpu_streamed(x_in, w2, "w2");
  // Dense NHWC or NCHW is read in place; anything else becomes NCHW (its output is NCHW).
  const bool nhwc = wants_channels_last(x_in);
  const at::Tensor x = nhwc ? x_in : x_in.contiguous();
  at::Tensor out = scale_only
                       ? at::empty({k.N, k.C}, x.options().dtype(what == SeOut::Scale ? x.scalar_type() : at::kFloat))
                       : at::empty({k.N, k.C, k.H, k.W},
                                   x.options().memory_format(nhwc ? at::MemoryFormat::ChannelsLast
                                                                  : at::MemoryFormat::Contiguous));
  if (k.N == 0) return out;

  with_cpu_dtype(x, [&](auto t) {
    using T = decltype(t);
    at::Tensor w1_hold, w2_hold, b1_hold, b2_hold;
    SeArgs<T> p{};
    p.x = data_as<T>(x);
    p.N = k.N;
    p.C = k.C;
    p.S = k.S;
    p.HW = k.H * k.W;
    p.nhwc = nhwc;
    p.w1 = fc_matrix<T>(w1, w1_hold);
    p.b1 = dense_1d(b1, b1_hold);
    p.w2 = fc_matrix<T>(w2, w2_hold);
    p.b2 = dense_1d(b2, b2_hold);
    if (!scale_only) {
      std::unique_ptr<float[]> scale(new float[k.N * k.C]);
      p.y = data_as<T>(out);
      run_se(p, scale.get());
    } else if (std::is_same_v<T, float> || what == SeOut::ScaleFloat) {
      float* scale = out.data_ptr<float>();
      run_se(p, scale);
      if constexpr (!std::is_same_v<T, float>)  // rounded as out.copy_ below rounds
        for (int64_t i = 0; i < k.N * k.C; ++i) scale[i] = to_f32(float_to_bf16(scale[i]));
    } else {
      // The float32 scale, rounded once to x's dtype (round to nearest even, as PyTorch).
      const at::Tensor scale = at::empty({k.N, k.C}, x.options().dtype(at::kFloat));
      run_se(p, scale.data_ptr<float>());
      out.copy_(scale);
    }
  });
  return out;
}

}  // namespace

at::Tensor se_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                  const at::Tensor& w2, const at::Tensor& b2) {
  return se_impl(x, w1, b1, w2, b2, SeOut::Apply);
}

at::Tensor se_scale_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                        const at::Tensor& w2, const at::Tensor& b2) {
  return se_impl(x, w1, b1, w2, b2, SeOut::Scale);
}

at::Tensor se_scale_float_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                              const at::Tensor& w2, const at::Tensor& b2) {
  return se_impl(x, w1, b1, w2, b2, SeOut::ScaleFloat);
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("se(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2) -> Tensor");
  m.def("se_scale(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2) -> Tensor");
  // The argument checks alone, on any device (fake and CUDA paths): [N, C, H, W, S].
  m.def("_check_se(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, bool scale_only=False) -> int[]",
        &mbv3::check_se_op);
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) {
  m.impl("se", &mbv3::se_cpu);
  m.impl("se_scale", &mbv3::se_scale_cpu);
}
