// Torch-free interface of the int8 1x1 conv (+ requantization, activation table, residual add,
// SE input scale): a GEMM over NHWC uint8 rows x packed int8 weights, exact in int32.
#pragma once
#include <cstdint>

#include "common/q8.h"

namespace mbv3 {

// Packed weight (mbv3_fast.ops.q8_pwconv_act.pack_weight; the binding packs a plain weight per
// call the same way): K in groups of 4 for vpdpbusd / vpmaddwd, one int8 buffer of
//   [ceil(K / 4)][ldw][4]  w[(k / 4) * 4 * ldw + 4 * n + k % 4] = weight[n, k], zero padded,
//   then ldw int32 column sums (sum_k weight[n, k], for the input zero-point correction),
// ldw = Cout rounded up to 16.
constexpr int64_t kQ8PwCols = 16;
inline int64_t q8_pw_ldw(int64_t cout) { return (cout + kQ8PwCols - 1) / kQ8PwCols * kQ8PwCols; }
inline int64_t q8_pw_packed_size(int64_t cin, int64_t cout) {
  return ((cin + 3) / 4 * 4 + 4) * q8_pw_ldw(cout);
}

// y[m, n] = add(requant(sum_k (A[m, k] - x_zp) * w[n, k]), residual[m, n]);
// A[m, k] = x[m, k], or q8_mul(x[m, k], se[m / HW][k], mul) with se.
struct Q8PwArgs {
  const uint8_t* x;         // [M][K] NHWC rows
  const int8_t* w;          // packed, see above
  const int32_t* fold;      // [ldw] bias_int[n] - x_zp * colsum[n] (zero padded)
  const int32_t* lut32;     // null or the 256-entry table widened to int32 (avx2 gathers)
  const uint8_t* residual;  // null or [M][Cout]
  const uint8_t* se;        // null or [N][K]
  uint8_t* y;               // [M][Cout]
  int64_t M, K, Cout, HW, ldw;
  int32_t x_zp;
  Q8Requant rq;
  Q8Add add;
  Q8Mul mul;
};

// Computes rows [m_begin, m_end) x columns [n_begin, n_end) of y; n_begin a multiple of 16.
#define MBV3_DECLARE_Q8_PWCONV(ns)                                                                       \
  namespace ns {                                                                                         \
  void q8_pwconv_act(const Q8PwArgs& p, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end); \
  int q8_pwconv_mr();                                                                                    \
  }
MBV3_DECLARE_Q8_PWCONV(scalar)
MBV3_DECLARE_Q8_PWCONV(avx2)
MBV3_DECLARE_Q8_PWCONV(avx512_vnni)
MBV3_DECLARE_Q8_PWCONV(neon)
#undef MBV3_DECLARE_Q8_PWCONV

}  // namespace mbv3
