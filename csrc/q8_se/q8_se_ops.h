// Binding helpers shared by q8_se and q8_classifier_head: weight checks and the quantized
// global average pool (q8_se.h's rules) over a torch tensor.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <cmath>
#include <optional>
#include <vector>

#include "common/q8_args.h"
#include "q8_se.h"

namespace mbv3 {

// An int8 weight [cout, cin] or [cout, cin, 1, 1] with cin == `cin` (-1: any); returns it as a
// contiguous [cout, cin] tensor.
inline at::Tensor q8_fc_weight(const at::Tensor& w, int64_t cin, const char* op, const char* name) {
  TORCH_CHECK_VALUE(w.scalar_type() == at::kChar, op, ": ", name, " must be int8 (qweight.int_repr()), got ",
                    w.scalar_type());
  TORCH_CHECK(w.device().is_cpu(), op, ": ", name, " must be on the CPU, got ", w.device());
  const bool ok = (w.dim() == 2 || (w.dim() == 4 && w.size(2) == 1 && w.size(3) == 1)) && (cin < 0 || w.size(1) == cin);
  TORCH_CHECK_VALUE(ok, op, ": ", name, " must be [Cout, ", cin, "] or [Cout, ", cin, ", 1, 1], got ", w.sizes());
  return w.reshape({w.size(0), w.size(1)}).contiguous();
}

// x in the layout PyTorch's quantized tensor of it would have (suggest_memory_format), and the
// pool rule that PyTorch applies to it under the quantized engine in force (x_scale: x's scale,
// which QNNPACK's rounding depends on; null: taken as a power of two).
inline at::Tensor q8_pool_input(const at::Tensor& x, Q8Pool& pool, std::optional<double> x_scale, const char* op) {
  if (x_scale) {
    TORCH_CHECK_VALUE(std::isfinite(*x_scale) && *x_scale > 0, op, ": x_scale must be finite and > 0, got ", *x_scale);
  }
  at::Tensor xs = x.contiguous(x.suggest_memory_format());
  const int64_t H = x.size(2), W = x.size(3);
  Q8PoolRule rule = xs.is_contiguous(at::MemoryFormat::ChannelsLast) ? Q8PoolRule::Nhwc : Q8PoolRule::Nchw;
  if (at::globalContext().qEngine() == at::QEngine::QNNPACK && H * W > 1) rule = Q8PoolRule::Qnnpack;
  pool.rule = rule;
  pool = q8_pool_params(rule, pool.zp, H, W, x_scale ? static_cast<float>(*x_scale) : 0.f);
  return xs;
}

// pooled[i, c] for samples [n0, n1) of xs (q8_pool_input), into out[(i - n0) * C + c].
inline void q8_pool(const at::Tensor& xs, const Q8Pool& pool, int64_t n0, int64_t n1, uint8_t* out) {
  const int64_t C = xs.size(1), HW = xs.size(2) * xs.size(3);
  const uint8_t* base = xs.data_ptr<uint8_t>();
  const bool nhwc = xs.is_contiguous(at::MemoryFormat::ChannelsLast);
  Q8PoolSumsFn* sums_of = q8_pool_sums_kernel(q8_isa(current_isa()));
  std::vector<int32_t> sums(C);
  for (int64_t i = n0; i < n1; ++i) {
    sums_of(base + i * C * HW, HW, C, nhwc, sums.data());
    for (int64_t c = 0; c < C; ++c) out[(i - n0) * C + c] = q8_pool_round(sums[c], pool);
  }
}

}  // namespace mbv3
