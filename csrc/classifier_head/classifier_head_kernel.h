// Fused classifier head phases over float32 or bf16 x and weights (float32 pooled means,
// hidden vector and logits), written once against `Vec` and compiled once per
// ISA (classifier_head_<isa>.cpp), from the pooling and FC blocks the SE kernels also use
// (pool_fc_kernel.h): the same pairwise sums, the same matrix-vector product.
#pragma once
#include <algorithm>

#include "classifier_head.h"
#include "common/pool_fc_kernel.h"

namespace mbv3 {
namespace MBV3_ISA_NS {

namespace {

template <class T>
void pool(const HeadPoolArgs<T>& p, int64_t n_begin, int64_t n_end, float* pooled) {
  const int64_t C = p.C, HW = p.HW;
  const Vec inv = Vec::set1(1.f / float(HW));
  for (int64_t n = n_begin; n < n_end; ++n) {
    float* out = pooled + n * C;
    if (p.nhwc) {
      pool_nhwc_chunk(p.x + n * HW * C, C, HW, out);  // two-level sums over the pixels
    } else {
      const T* x = p.x + n * C * HW;
      int64_t c = 0;
      for (; c + 4 <= C; c += 4) sum_planes4(x + c * HW, HW, out + c);
      for (; c < C; ++c) out[c] = reduce_add(sum_lanes(x + c * HW, HW));
    }
    for (int64_t c = 0; c < C; c += Vec::N) store_any(out + c, C - c, mul(load_any(out + c, C - c), inv));
  }
}

static_assert(kHeadSamples == kFcMaxSamples, "fc_layer takes up to kHeadSamples samples");

template <class TW>
void linear(const FcMatrixT<TW>& w, const float* b, Act act, int64_t nb, const float* in, int64_t nin,
            int64_t o_begin, int64_t o_end, float* out, int64_t out_ld) {
  with_act(act, [&](auto a) {
    constexpr Act A = decltype(a)::value;
    fc_layer(w, b, nb, in, nin, nin, o_begin, o_end, out, out_ld, [](Vec v) { return activate<A>(v); });
  });
}

}  // namespace

#define MBV3_DEFINE_HEAD_T(P, M)                                                                     \
  void head_pool(const P& p, int64_t n_begin, int64_t n_end, float* pooled) { pool(p, n_begin, n_end, pooled); } \
  void head_linear(const M& w, const float* b, Act act, int64_t nb, const float* in, int64_t nin,     \
                   int64_t o_begin, int64_t o_end, float* out, int64_t out_ld) {                     \
    linear(w, b, act, nb, in, nin, o_begin, o_end, out, out_ld);                                    \
  }
MBV3_DEFINE_HEAD_T(HeadPoolParams, FcMatrix)
MBV3_DEFINE_HEAD_T(HeadPoolParamsBf16, FcMatrixT<bf16>)
#undef MBV3_DEFINE_HEAD_T

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
