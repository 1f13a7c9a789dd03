// torch binding of mbv3::q8_se: schema, checks, threading, int8 ISA choice.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common/isa_dispatch.h"
#include "common/op_utils.h"
#include "q8_se_ops.h"
#include "common/q8_cpu_ops.h"

namespace mbv3 {

Q8FcFn* q8_fc_kernel(Q8Isa isa) { return MBV3_Q8_SELECT(q8_fc, isa); }

Q8PoolSumsFn* q8_pool_sums_kernel(Q8Isa isa) { return MBV3_Q8_SELECT(q8_pool_sums, isa); }

namespace {

constexpr const char* kOp = "q8_se";

}  // namespace

// scale[n, c] = lut[fc2(relu(fc1(pool(x))))]: uint8 [N, C].
at::Tensor q8_se_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& w1, const at::Tensor& bias_int1,
                     const at::Tensor& bias_float1, const at::Tensor& multiplier1, c10::IntArrayRef out_qparams1,
                     const at::Tensor& w2, const at::Tensor& bias_int2, const at::Tensor& bias_float2,
                     const at::Tensor& multiplier2, c10::IntArrayRef out_qparams2, const at::Tensor& lut,
                     std::optional<double> x_scale, std::optional<c10::ArrayRef<double>> onednn1,
                     std::optional<c10::ArrayRef<double>> onednn2) {
  check_q8_x(x, kOp);
  check_q8_zero_point(x_zero_point, kOp, "x_zero_point");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK_VALUE(C >= 1 && H >= 1 && W >= 1, kOp, ": x must have C, H, W >= 1, got ", x.sizes());
  const at::Tensor w1c = q8_fc_weight(w1, C, kOp, "w1");
  const int64_t S = w1c.size(0);
  TORCH_CHECK_VALUE(S >= 1, kOp, ": w1 must have at least one output channel");
  const at::Tensor w2c = q8_fc_weight(w2, S, kOp, "w2");
  TORCH_CHECK_VALUE(w2c.size(0) == C, kOp, ": w2 must be [C, S] = [", C, ", ", S, "], got ", w2.sizes());
  at::Tensor st1[4], st2[4];
  const Q8Requant rq1 = q8_requant_args(bias_int1, bias_float1, multiplier1, out_qparams1, std::nullopt, S, kOp, st1,
                                            onednn1);
  const Q8Requant rq2 = q8_requant_args(bias_int2, bias_float2, multiplier2, out_qparams2, lut, C, kOp, st2, onednn2);
  at::Tensor out = at::empty({N, C}, x.options());
  if (N == 0) return out;
  Q8Pool pool{Q8PoolRule::Nhwc, static_cast<int32_t>(x_zero_point), 0, 0.f};
  const at::Tensor xs = q8_pool_input(x, pool, x_scale, kOp);
  Q8FcFn* fc = q8_fc_kernel(q8_isa(current_isa()));
  const int8_t* w1p = w1c.data_ptr<int8_t>();
  const int8_t* w2p = w2c.data_ptr<int8_t>();
  uint8_t* y = out.data_ptr<uint8_t>();
  // Samples are independent: one per task, never split, so results do not depend on threads.
  const int64_t per_sample = C * H * W + 2 * C * S;
  parallel_for(0, N, parallel_grain(per_sample, 1 << 18), [&](int64_t n0, int64_t n1) {
    std::vector<uint8_t> pooled((n1 - n0) * C), hidden((n1 - n0) * S);
    q8_pool(xs, pool, n0, n1, pooled.data());
    fc(Q8Fc{pooled.data(), w1p, n1 - n0, C, S, pool.zp, rq1, hidden.data(), nullptr, 0, 0.f}, 0, S);
    fc(Q8Fc{hidden.data(), w2p, n1 - n0, S, C, rq1.zp, rq2, y + n0 * C, nullptr, 0, 0.f}, 0, C);
  });
  return out;
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("q8_se(Tensor x, int x_zero_point, Tensor w1, Tensor bias_int1, Tensor bias_float1, Tensor multiplier1, "
        "int[] out_qparams1, Tensor w2, Tensor bias_int2, Tensor bias_float2, Tensor multiplier2, "
        "int[] out_qparams2, Tensor lut, float? x_scale=None, float[]? onednn1=None, "
        "float[]? onednn2=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) { m.impl("q8_se", &mbv3::q8_se_cpu); }
