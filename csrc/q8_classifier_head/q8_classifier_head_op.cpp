// torch binding of mbv3::q8_classifier_head: pool -> linear1 + hardswish (table) -> linear2 ->
// dequantize, with the int8 GEMV of q8_se (csrc/q8_se/q8_se.h).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "common/op_utils.h"
#include "common/q8_cpu_ops.h"
#include "q8_se/q8_se_ops.h"

namespace mbv3 {
namespace {

constexpr const char* kOp = "q8_classifier_head";

// Each linear's outputs are split in slices of whole 16-column blocks across threads: at batch 1
// the op streams its weights once, so each thread reads only its share.  Every output is one
// whole dot product, so the split never changes a result.
void run_fc(Q8FcFn* fc, const Q8Fc& p) {
  const int64_t blocks = (p.Cout + 15) / 16;
  parallel_for(0, blocks, parallel_grain(16 * p.K * p.N, 1 << 17), [&](int64_t b0, int64_t b1) {
    fc(p, b0 * 16, std::min(p.Cout, b1 * 16));
  });
}

}  // namespace

at::Tensor q8_classifier_head_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& w1,
                                  const at::Tensor& bias_int1, const at::Tensor& bias_float1,
                                  const at::Tensor& multiplier1, c10::IntArrayRef out_qparams1, const at::Tensor& lut1,
                                  int64_t hidden_zero_point, const at::Tensor& w2, const at::Tensor& bias_int2,
                                  const at::Tensor& bias_float2, const at::Tensor& multiplier2,
                                  c10::IntArrayRef out_qparams2, double out_scale,
                                  std::optional<double> x_scale, std::optional<c10::ArrayRef<double>> onednn1,
                                  std::optional<c10::ArrayRef<double>> onednn2) {
  check_q8_x(x, kOp);
  check_q8_zero_point(x_zero_point, kOp, "x_zero_point");
  check_q8_zero_point(hidden_zero_point, kOp, "hidden_zero_point");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK_VALUE(C >= 1 && H >= 1 && W >= 1, kOp, ": x must have C, H, W >= 1, got ", x.sizes());
  const at::Tensor w1c = q8_fc_weight(w1, C, kOp, "w1");
  const int64_t Hd = w1c.size(0);
  TORCH_CHECK_VALUE(Hd >= 1, kOp, ": w1 must have at least one output");
  const at::Tensor w2c = q8_fc_weight(w2, Hd, kOp, "w2");
  const int64_t K = w2c.size(0);
  TORCH_CHECK_VALUE(K >= 1, kOp, ": w2 must have at least one output");
  const float scale = static_cast<float>(out_scale);
  TORCH_CHECK_VALUE(std::isfinite(scale) && scale > 0, kOp, ": out_scale must be finite and > 0, got ", out_scale);
  at::Tensor st1[4], st2[4];
  const Q8Requant rq1 = q8_requant_args(bias_int1, bias_float1, multiplier1, out_qparams1, lut1, Hd, kOp, st1, onednn1);
  const Q8Requant rq2 = q8_requant_args(bias_int2, bias_float2, multiplier2, out_qparams2, std::nullopt, K, kOp, st2,
                                            onednn2);
  at::Tensor out = at::empty({N, K}, x.options().dtype(at::kFloat));
  if (N == 0) return out;
  Q8Pool pool{Q8PoolRule::Nhwc, static_cast<int32_t>(x_zero_point), 0, 0.f};
  const at::Tensor xs = q8_pool_input(x, pool, x_scale, kOp);
  std::vector<uint8_t> pooled(N * C), hidden(N * Hd);
  parallel_for(0, N, parallel_grain(C * H * W, 1 << 18), [&](int64_t n0, int64_t n1) {
    q8_pool(xs, pool, n0, n1, pooled.data() + n0 * C);
  });
  Q8FcFn* fc = q8_fc_kernel(q8_isa(current_isa()));
  run_fc(fc, Q8Fc{pooled.data(), w1c.data_ptr<int8_t>(), N, C, Hd, pool.zp, rq1, hidden.data(), nullptr, 0, 0.f});
  run_fc(fc, Q8Fc{hidden.data(), w2c.data_ptr<int8_t>(), N, Hd, K, static_cast<int32_t>(hidden_zero_point), rq2,
                  nullptr, out.data_ptr<float>(), rq2.zp, scale});
  return out;
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("q8_classifier_head(Tensor x, int x_zero_point, Tensor w1, Tensor bias_int1, Tensor bias_float1, "
        "Tensor multiplier1, int[] out_qparams1, Tensor lut1, int hidden_zero_point, Tensor w2, Tensor bias_int2, "
        "Tensor bias_float2, Tensor multiplier2, int[] out_qparams2, float out_scale, float? x_scale=None, "
        "float[]? onednn1=None, float[]? onednn2=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) { m.impl("q8_classifier_head", &mbv3::q8_classifier_head_cpu); }
