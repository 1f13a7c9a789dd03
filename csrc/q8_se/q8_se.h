// Torch-free interface of the int8 squeeze-excitation (q8_se) kernels, shared with the int8
// classifier head (q8_classifier_head): the quantized global average pool and the int8 GEMV
// (1x1 conv / linear on pooled vectors) with q8.h's requantization.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/q8.h"

namespace mbv3 {

// PyTorch's quantized adaptive_avg_pool2d(x, 1) with the output keeping x's qparams; which code
// runs, and so how ties round, depends on the engine and x's layout
// (aten/src/ATen/native/quantized/cpu/AdaptiveAveragePooling.cpp):
//   Nhwc     x channels-last contiguous: int32 acc = sum - zp * hw, fbgemm's Quantize with
//            scale 1 / m, m = 1.0f / hw: zp + rne(acc * (1.0f / (1.0f / m))).
//   Nchw     otherwise: rne(float(sum) * ((1.0f / H) / W)); zp-free.
//   Qnnpack  the QNNPACK engine (H * W > 1): its avgpool, zp + rne(acc * m), where QNNPACK's m is
//            s / (s * hw) in float32 (s: x's scale, the ops' optional x_scale; without it
//            1.0f / hw, equal for power-of-two s, while for other s ties (even hw) may differ).
enum class Q8PoolRule : int32_t { Nhwc = 0, Nchw = 1, Qnnpack = 2 };
struct Q8Pool {
  Q8PoolRule rule;
  int32_t zp;
  int64_t hw;
  float mult;
};

inline Q8Pool q8_pool_params(Q8PoolRule rule, int32_t zp, int64_t H, int64_t W, float x_scale = 0.f) {
  const float m = 1.0f / static_cast<float>(H * W);
  float mult = m;
  if (rule == Q8PoolRule::Qnnpack && x_scale > 0.f) mult = x_scale / (x_scale * static_cast<float>(H * W));
  if (rule == Q8PoolRule::Nhwc) mult = 1.0f / (1.0f / m);
  if (rule == Q8PoolRule::Nchw) mult = (1.0f / static_cast<float>(H)) / static_cast<float>(W);
  return Q8Pool{rule, zp, H * W, mult};
}

inline uint8_t q8_pool_round(int64_t sum, const Q8Pool& p) {
  float v;
  int32_t zp = 0;
  if (p.rule == Q8PoolRule::Nchw) {
    v = static_cast<float>(sum) * p.mult;
  } else {
    v = static_cast<float>(static_cast<int32_t>(sum - p.zp * p.hw)) * p.mult;
    zp = p.zp;
  }
  const int32_t q = static_cast<int32_t>(std::nearbyint(v)) + zp;
  return static_cast<uint8_t>(q < 0 ? 0 : (q > 255 ? 255 : q));
}

// y[i, n] = requant(sum_k (x[i, k] - x_zp) * w[n, k]) for samples i < N, outputs n in a range.
//   x: [N][K] uint8 (pooled vectors), row stride K.  w: [Cout][K] int8, row stride K.
//   Output: y uint8 [N][Cout] (row stride Cout); or, with yf, float32 (q - yf_zp) * yf_scale,
//   PyTorch's scalar dequantize (torch.dequantize of a quint8 tensor: no fma).
struct Q8Fc {
  const uint8_t* x;
  const int8_t* w;
  int64_t N, K, Cout;
  int32_t x_zp;
  Q8Requant rq;
  uint8_t* y;
  float* yf;
  int32_t yf_zp;
  float yf_scale;
};

inline void q8_fc_store(const Q8Fc& p, int64_t i, int64_t n, int32_t acc) {
  const uint8_t q = q8_requantize(acc, n, p.rq);
  if (p.yf)
    p.yf[i * p.Cout + n] = static_cast<float>(static_cast<int32_t>(q) - p.yf_zp) * p.yf_scale;
  else
    p.y[i * p.Cout + n] = q;
}

// q8_fc: outputs [n_begin, n_end) of every sample.  q8_pool_sums: sums[c] = sum of channel c
// over the HW pixels of one sample x, NHWC ([HW][C]) or NCHW ([C][HW]).
#define MBV3_DECLARE_Q8_FC(ns)                                                            \
  namespace ns {                                                                          \
  void q8_fc(const Q8Fc& p, int64_t n_begin, int64_t n_end);                              \
  void q8_pool_sums(const uint8_t* x, int64_t HW, int64_t C, bool nhwc, int32_t* sums);   \
  }
MBV3_DECLARE_Q8_FC(scalar)
MBV3_DECLARE_Q8_FC(avx2)
MBV3_DECLARE_Q8_FC(avx512_vnni)
MBV3_DECLARE_Q8_FC(neon)
#undef MBV3_DECLARE_Q8_FC

using Q8FcFn = void(const Q8Fc&, int64_t, int64_t);
using Q8PoolSumsFn = void(const uint8_t*, int64_t, int64_t, bool, int32_t*);
// The kernels of the int8 family in force.
Q8FcFn* q8_fc_kernel(Q8Isa isa);
Q8PoolSumsFn* q8_pool_sums_kernel(Q8Isa isa);

}  // namespace mbv3
