// Torch-free interface of the fused squeeze-excitation kernels (MobileNetV3 flavour):
//   y = x * hardsigmoid(w2 . relu(w1 . mean_hw(x) + b1) + b2), per sample and channel.
// The op runs in phases, each a per-ISA function over a range the binding hands out to threads:
// pool (partial sums over pixel chunks) -> means -> FC1 + ReLU (sliced over S) -> FC2 +
// hardsigmoid (sliced over C) -> apply.
#pragma once
#include <cstdint>

#include "common/fc_matrix.h"

namespace mbv3 {

// The SE's two 1x1-conv weights, read in place (see fc_matrix.h).
using SeMatrix = FcMatrix;

// x (and y) are dense float32, NHWC ([N][HW][C]) when nhwc, else NCHW ([N][C][HW]).
struct SeParams {
  const float* x;
  float* y;  // may be null (scale only)
  int64_t N, C, S, HW;
  bool nhwc;
  SeMatrix w1;  // [S, C]
  const float* b1;
  SeMatrix w2;  // [C, S]
  const float* b2;
  // NHWC pool: pixels per chunk; each (n, chunk) writes a partial sum row of C floats.
  // NCHW pool: 1 chunk (= HW), whole planes.
  int64_t chunk;
};

constexpr int64_t kSeFcSamples = 4;  // samples per se_fc1 / se_fc2 call, at most

inline int64_t se_num_chunks(const SeParams& p) { return (p.HW + p.chunk - 1) / p.chunk; }

// Per-ISA entry points.
//  se_pool:   units [u_begin, u_end) of N * se_num_chunks (NHWC: one pixel chunk, all channels)
//             or N * C (NCHW: one plane each); writes part[(n * chunks + k) * C + c] (NHWC) or
//             part[n * C + c] (NCHW), sums of x (not yet divided by HW).
//  se_mean:   mean[c] = (sum over the sample's chunks of part) / HW, c in [0, C).
//  se_fc1:    nb (1..kSeFcSamples) samples, outputs [s_begin, s_end) of FC1:
//             h[j * S + s] = relu(b1[s] + w1(s, :) . mean[j * C ...]).
//  se_fc2:    the same for FC2, outputs [c_begin, c_end):
//             scale[j * C + c] = hardsigmoid(b2[c] + w2(c, :) . h[j * S ...]).
//             Each weight is read once for the nb samples; every output is one thread's whole
//             dot product, so the result does not depend on how the outputs are split.
//  se_apply:  y = x * scale[n, c] for units [u_begin, u_end) of N * HW pixels (NHWC) or
//             N * C planes (NCHW); scale is [N][C].
#define MBV3_DECLARE_SE(ns)                                                                       \
  namespace ns {                                                                                  \
  void se_pool(const SeParams& p, int64_t u_begin, int64_t u_end, float* part);                   \
  void se_mean(const SeParams& p, const float* part_n, float* mean);                              \
  void se_fc1(const SeParams& p, int64_t nb, const float* mean, float* h, int64_t s_begin,       \
              int64_t s_end);                                                                     \
  void se_fc2(const SeParams& p, int64_t nb, const float* h, float* scale, int64_t c_begin,       \
              int64_t c_end);                                                                     \
  void se_apply(const SeParams& p, const float* scale, int64_t u_begin, int64_t u_end);           \
  }
MBV3_DECLARE_SE(scalar)
MBV3_DECLARE_SE(avx2)
MBV3_DECLARE_SE(avx512)
MBV3_DECLARE_SE(neon)
#undef MBV3_DECLARE_SE

}  // namespace mbv3
