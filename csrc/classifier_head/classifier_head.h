// Torch-free interface of the fused classifier head of MobileNetV3 (torchvision's layout):
//   y[n] = w2 . act(w1 . mean_hw(x[n]) + b1) + b2
// (global average pool -> Linear -> activation -> [Dropout: identity in eval] -> Linear).
// At batch 1 this is two matrix-vector products over 10 MB of weights (Large), so the work
// is reading the weights once, all threads streaming disjoint rows.  The binding runs it in
// three phases, each a per-ISA function over a range it hands out to threads.
#pragma once
#include <cstdint>

#include "common/activation.h"
#include "common/bf16.h"
#include "common/cpu_isa.h"
#include "common/fc_matrix.h"

namespace mbv3 {

// x is dense T (float32 or bf16, widened on load), NHWC ([N][HW][C]) when nhwc, else NCHW
// ([N][C][HW]); the pooled means are float32 either way.
template <class T>
struct HeadPoolArgs {
  const T* x;
  int64_t C, HW;
  bool nhwc;
};
using HeadPoolParams = HeadPoolArgs<float>;
using HeadPoolParamsBf16 = HeadPoolArgs<bf16>;

constexpr int64_t kHeadSamples = 8;  // samples per head_linear call, at most

// Per-ISA entry points.
//  head_pool:   pooled[n * C + c] = mean over the HW pixels of sample n, n in [n_begin, n_end).
//  head_linear: for nb (1..kHeadSamples) samples j and outputs o in [o_begin, o_end):
//               out[j * out_ld + o] = act(b[o] + sum_i W(o, i) in[j * nin + i]), each weight
//               read once for the nb samples.  W is float32 or bf16 (widened on load, or read
//               by rows with bf16 dot products where fc_dot_products(isa): cpu_isa.h); b, in
//               and out are float32.
//  Both are overloaded for float32 and bf16 (HeadPoolParamsBf16, FcMatrixT<bf16>).
#define MBV3_DECLARE_HEAD_T(P, M)                                                                \
  void head_pool(const P& p, int64_t n_begin, int64_t n_end, float* pooled);                     \
  void head_linear(const M& w, const float* b, Act act, int64_t nb, const float* in, int64_t nin, \
                   int64_t o_begin, int64_t o_end, float* out, int64_t out_ld);
#define MBV3_DECLARE_HEAD(ns)                                   \
  namespace ns {                                                \
  MBV3_DECLARE_HEAD_T(HeadPoolParams, FcMatrix)                 \
  MBV3_DECLARE_HEAD_T(HeadPoolParamsBf16, FcMatrixT<bf16>)      \
  }
MBV3_DECLARE_HEAD(scalar)
MBV3_DECLARE_HEAD(avx2)
MBV3_DECLARE_HEAD(avx512)
MBV3_DECLARE_HEAD(avx512_bf16)
MBV3_DECLARE_HEAD(neon)
MBV3_DECLARE_HEAD(neon_bf16)
#undef MBV3_DECLARE_HEAD
#undef MBV3_DECLARE_HEAD_T

// The panel height (outputs per panel) the path wants the head's float32 FC weights packed in
// (FcMatrixT::panel; 0: [out, in] rows read in place).  A register block of outputs then reads
// one contiguous stream instead of one dot product per row.
int64_t head_panel_rows(Isa isa);

// The entry points' types, for MBV3_ISA_SELECT_AS (isa_dispatch.h).
template <class T>
using HeadPoolFn = void(const HeadPoolArgs<T>&, int64_t, int64_t, float*);
template <class T>
using HeadLinearFn = void(const FcMatrixT<T>&, const float*, Act, int64_t, const float*, int64_t, int64_t,
                          int64_t, float*, int64_t);

}  // namespace mbv3
