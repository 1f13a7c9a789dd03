// Torch-free interface of the fused pointwise (1x1) conv + (folded) BatchNorm + activation
// (+ SE input scale, + residual) kernels.
#pragma once
#include <cstdint>

#include "common/activation.h"

namespace mbv3 {

// A GEMM over NHWC float32: y[M, Cout] = act(x[M, K] * diag(in_scale[n]) * w[K, Cout] + b) + r.
//   x: [M, K] rows of K = Cin channels (M = N*H*W), row stride K.
//   w: K-major [K][Cout] with row stride ldw (>= Cout): w[k * ldw + n] = weight[n, k].
//   in_scale: null or [N][K]; sample of row m is m / HW.  residual: null or [M][Cout].
struct PwConvParams {
  const float* x;
  const float* w;
  const float* b;
  const float* in_scale;
  const float* residual;
  float* y;
  int64_t M, K, Cout, HW, ldw;
  Act act;
  // With in_scale: scale copies of the rows (true) or of the weight columns.  The caller picks
  // it from the layer's shape, so the result does not depend on how the rows are split.
  bool scale_rows = true;
};

// Register tile of each ISA: rows of the widest tile, most columns of a tile, vector width.
struct PwTile { int mr, nr, vec; };

// Computes rows [m_begin, m_end) x columns [n_begin, n_end) of y (any ranges; n_begin a
// multiple of the vector width keeps the loads aligned to the caller's vector split).
#define MBV3_DECLARE_PWCONV(ns)                                                                  \
  namespace ns {                                                                                 \
  void pwconv_bn_act(const PwConvParams& p, int64_t m_begin, int64_t m_end, int64_t n_begin,     \
                     int64_t n_end);                                                             \
  PwTile pwconv_tile();                                                                          \
  }
MBV3_DECLARE_PWCONV(scalar)
MBV3_DECLARE_PWCONV(avx2)
MBV3_DECLARE_PWCONV(avx512)
MBV3_DECLARE_PWCONV(neon)
#undef MBV3_DECLARE_PWCONV

}  // namespace mbv3
