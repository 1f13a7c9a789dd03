// Torch-free interface of the fused classifier head of MobileNetV3 (torchvision's layout):
//   y[n] = w2 . act(w1 . mean_hw(x[n]) + b1) + b2
// (global average pool -> Linear -> activation -> [Dropout: identity in eval] -> Linear).
// At batch 1 this is two matrix-vector products over 10 MB of weights (Large), so the work
// is reading the weights once, all threads streaming disjoint rows.  The binding runs it in
// three phases, each a per-ISA function over a range it hands out to threads.
#pragma once
#include <cstdint>

#include "common/activation.h"
#include "common/fc_matrix.h"

namespace mbv3 {

// x is dense float32, NHWC ([N][HW][C]) when nhwc, else NCHW ([N][C][HW]).
struct HeadPoolParams {
  const float* x;
  int64_t C, HW;
  bool nhwc;
};

constexpr int64_t kHeadSamples = 4;  // samples per head_linear call, at most

// Per-ISA entry points.
//  head_pool:   pooled[n * C + c] = mean over the HW pixels of sample n, n in [n_begin, n_end).
//  head_linear: for nb (1..kHeadSamples) samples j and outputs o in [o_begin, o_end):
//               out[j * out_ld + o] = act(b[o] + sum_i W(o, i) in[j * nin + i]), each weight
//               read once for the nb samples.
#define MBV3_DECLARE_HEAD(ns)                                                                   \
  namespace ns {                                                                                \
  void head_pool(const HeadPoolParams& p, int64_t n_begin, int64_t n_end, float* pooled);       \
  void head_linear(const FcMatrix& w, const float* b, Act act, int64_t nb, const float* in,     \
                   int64_t nin, int64_t o_begin, int64_t o_end, float* out, int64_t out_ld);    \
  }
MBV3_DECLARE_HEAD(scalar)
MBV3_DECLARE_HEAD(avx2)
MBV3_DECLARE_HEAD(avx512)
MBV3_DECLARE_HEAD(neon)
#undef MBV3_DECLARE_HEAD

}  // namespace mbv3
