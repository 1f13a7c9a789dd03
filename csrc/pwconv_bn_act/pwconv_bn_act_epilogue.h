// The 1x1 kernels' shared epilogue (float kernel, pwconv_bn_act_kernel.h, and the K-pair
// dot-product kernel, pwconv_bn_act_k_pairs_kernel.h): a tile's float32 sums, bias already in,
// go through the activation, + residual, and are stored (bf16: rounded once), per ISA.
#pragma once
#include "pwconv_bn_act.h"
#include "common/simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

// Specialised by activation and residual.
template <int ROWS, int V, bool TAIL, Act ACT, bool RES, class T>
[[gnu::always_inline]] inline void store_tile(const Vec (&acc)[ROWS][V], const PwConvArgs<T>& p, int64_t m,
                                              int64_t n, int tail) {
  const int64_t C = p.Cout;
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r) {
    T* y = p.y + (m + r) * C + n;
    const T* res = p.residual + (m + r) * C + n;
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      Vec o = activate<ACT>(acc[r][v]);
      if (TAIL && v == V - 1) {
        if constexpr (RES) o = add(o, Vec::load_tail(res + v * Vec::N, tail));
        o.store_tail(y + v * Vec::N, tail);
      } else {
        if constexpr (RES) o = add(o, Vec::load(res + v * Vec::N));
        o.store(y + v * Vec::N);
      }
    }
  }
}

// The tile's rows and V vectors of columns at (m, n), the last holding `tail` columns.
template <int ROWS, int V, bool TAIL, class T>
[[gnu::always_inline]] inline void store_tile(const Vec (&acc)[ROWS][V], const PwConvArgs<T>& p, int64_t m,
                                              int64_t n, int tail) {
  const bool res = p.residual != nullptr;
  with_act(p.act, [&](auto a) {
    constexpr Act A = decltype(a)::value;
    if (res) store_tile<ROWS, V, TAIL, A, true>(acc, p, m, n, tail);
    else store_tile<ROWS, V, TAIL, A, false>(acc, p, m, n, tail);
  });
}

}  // namespace
}  // namespace MBV3_ISA_NS
}  // namespace mbv3
