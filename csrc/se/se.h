// Torch-free interface of the fused squeeze-excitation kernels (MobileNetV3 flavour):
//   y = x * hardsigmoid(w2 . relu(w1 . mean_hw(x) + b1) + b2), per sample and channel.
// The op runs in phases, each a per-ISA function over a range the binding hands out to threads:
// pool (partial sums over pixel chunks) -> means -> FC1 + ReLU (sliced over S) -> FC2 +
// hardsigmoid (sliced over C) -> apply.
#pragma once
#include <cstdint>

#include "common/bf16.h"
#include "common/fc_matrix.h"

namespace mbv3 {

// The SE's two 1x1-conv weights, read in place (see fc_matrix.h), in x's element type.
template <class T>
using SeMatrixT = FcMatrixT<T>;
using SeMatrix = SeMatrixT<float>;

// x (and y) are dense T (float32 or bf16), NHWC ([N][HW][C]) when nhwc, else NCHW ([N][C][HW]).
// bf16: x is widened on load, y rounded on store; the weights are bf16 (widened on load, or read
// by rows with bf16 dot products where fc_dot_products(isa): cpu_isa.h), the biases and every
// internal buffer (partial sums, means, hidden, scale) float32.
template <class T>
struct SeArgs {
  const T* x;
  T* y;  // may be null (scale only)
  int64_t N, C, S, HW;
  bool nhwc;
  SeMatrixT<T> w1;  // [S, C]
  const float* b1;
  SeMatrixT<T> w2;  // [C, S]
  const float* b2;
  // NHWC pool: pixels per chunk; each (n, chunk) writes a partial sum row of C floats.
  // NCHW pool: 1 chunk (= HW), whole planes.
  int64_t chunk;
};
using SeParams = SeArgs<float>;
using SeParamsBf16 = SeArgs<bf16>;

constexpr int64_t kSeFcSamples = 8;  // samples per se_fc1 / se_fc2 call, at most

template <class T>
inline int64_t se_num_chunks(const SeArgs<T>& p) { return (p.HW + p.chunk - 1) / p.chunk; }

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
//  Each is overloaded for SeParams (float32) and SeParamsBf16 (bf16 x / y / weights).
#define MBV3_DECLARE_SE_T(P)                                                                      \
  void se_pool(const P& p, int64_t u_begin, int64_t u_end, float* part);                          \
  void se_mean(const P& p, const float* part_n, float* mean);                                     \
  void se_fc1(const P& p, int64_t nb, const float* mean, float* h, int64_t s_begin, int64_t s_end); \
  void se_fc2(const P& p, int64_t nb, const float* h, float* scale, int64_t c_begin, int64_t c_end); \
  void se_apply(const P& p, const float* scale, int64_t u_begin, int64_t u_end);
#define MBV3_DECLARE_SE(ns)         \
  namespace ns {                    \
  MBV3_DECLARE_SE_T(SeParams)       \
  MBV3_DECLARE_SE_T(SeParamsBf16)   \
  }
MBV3_DECLARE_SE(scalar)
MBV3_DECLARE_SE(avx2)
MBV3_DECLARE_SE(avx512)
MBV3_DECLARE_SE(avx512_bf16)
MBV3_DECLARE_SE(neon)
MBV3_DECLARE_SE(neon_bf16)
#undef MBV3_DECLARE_SE
#undef MBV3_DECLARE_SE_T

// The entry points' types, for MBV3_ISA_SELECT_AS (isa_dispatch.h).
template <class T>
using SePoolFn = void(const SeArgs<T>&, int64_t, int64_t, float*);
template <class T>
using SeMeanFn = void(const SeArgs<T>&, const float*, float*);
template <class T>
using SeFcFn = void(const SeArgs<T>&, int64_t, const float*, float*, int64_t, int64_t);
template <class T>
using SeApplyFn = void(const SeArgs<T>&, const float*, int64_t, int64_t);

}  // namespace mbv3
