// bf16 fused 1x1 conv on AVX512_BF16: y = act(x * w + b) (+ residual), x and w bf16, sums in
// float32 by vdpbf16ps (one instruction: 16 lanes x one K pair, acc += a0 * b0 + a1 * b1).
//
// Weights packed in K pairs (pwconv_bn_act.h): per pair row, 16 columns' (w[k][n], w[k+1][n])
// are one 512-bit load, and the x pair (x[m][k], x[m][k+1]) one 32-bit broadcast.  Register
// tile: MR rows x V vectors (6 x 4, 8 x 3, 12 x 2, 12 x 1: accumulators + V weights + the
// broadcast within 32 registers), panels of up to 4 vectors outer, row tiles inner, as the
// float kernel (pwconv_bn_act_kernel.h).  K is never blocked: every output is one chain over
// all pairs, so the result does not depend on the tiling or the thread split.
//
// Odd K: the last pair broadcasts x[m][K-1] with a zero high half (never the element past the
// row: a NaN there would reach the sum as NaN * 0) and masks the weights' high half too.
// Rounding: vdpbf16ps ignores MXCSR, rounds to nearest even and flushes denormal inputs and
// outputs to zero (products of bf16 values below 2^-126 vanish: far below bf16's resolution
// of an O(1) sum).
#define MBV3_ISA_AVX512 1
#define MBV3_WITH_AVX512BF16 1
#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "pwconv_bn_act.h"
#include "common/simd.h"

namespace mbv3 {
namespace avx512_bf16 {
namespace {

constexpr int NV = 4;
constexpr int mr_for(int v) { return v == 4 ? 6 : v == 3 ? 8 : 12; }

static inline __m512 dot(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(a), reinterpret_cast<__m512bh&>(b));
}

static inline uint32_t pair_at(const bf16* p) {
  uint32_t u;
  std::memcpy(&u, p, sizeof u);
  return u;
}

template <int ROWS, int V, bool TAIL, Act ACT, bool RES>
[[gnu::always_inline]] inline void store_tile(const __m512 (&acc)[ROWS][V], const PwConvParamsBf16& p, int64_t m,
                                              int64_t n, int tail) {
  const int64_t C = p.Cout;
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r) {
    bf16* y = p.y + (m + r) * C + n;
    const bf16* res = p.residual + (m + r) * C + n;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      Vec o = activate<ACT>(Vec{acc[r][v]});
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

// One ROWS x V-vector tile at (m, n): a = x row m (row stride K), b = the pair row 0 of column n
// (pair row stride 2 * ldw).  The last vector stores `tail` columns (1..16).
template <int ROWS, int V, bool TAIL>
[[gnu::always_inline]] inline void tile(const PwConvParamsBf16& p, const bf16* a, const bf16* b, int64_t m,
                                        int64_t n, int tail) {
  const int64_t K = p.K, KP = K / 2, ldb = 2 * p.ldw;
  __m512 acc[ROWS][V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    const __m512 bias = (TAIL && v == V - 1) ? _mm512_maskz_loadu_ps(__mmask16((1u << tail) - 1u), p.b + n + 16 * v)
                                             : _mm512_loadu_ps(p.b + n + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) acc[r][v] = bias;
  }
  for (int64_t kp = 0; kp < KP; ++kp) {
    const bf16* bk = b + kp * ldb;
    __m512i bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = _mm512_loadu_si512(bk + 32 * v);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
      const __m512i av = _mm512_set1_epi32(int(pair_at(a + r * K + 2 * kp)));
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = dot(acc[r][v], av, bv[v]);
    }
  }
  if (K & 1) {
    const bf16* bk = b + KP * ldb;
    const __m512i lo = _mm512_set1_epi32(0xFFFF);
    __m512i bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = _mm512_and_si512(_mm512_loadu_si512(bk + 32 * v), lo);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
      const __m512i av = _mm512_set1_epi32(int(a[r * K + K - 1].bits));
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = dot(acc[r][v], av, bv[v]);
    }
  }
  const bool res = p.residual != nullptr;
  with_act(p.act, [&](auto act) {
    constexpr Act A = decltype(act)::value;
    if (res) store_tile<ROWS, V, TAIL, A, true>(acc, p, m, n, tail);
    else store_tile<ROWS, V, TAIL, A, false>(acc, p, m, n, tail);
  });
}

// Tiles of ROWS rows down [m, m_end) (a multiple of ROWS), a at row m.
template <int ROWS, int V, bool TAIL>
void tiles(const PwConvParamsBf16& p, const bf16* a, const bf16* b, int64_t m, int64_t m_end, int64_t n, int tail) {
  for (; m < m_end; m += ROWS, a += ROWS * p.K) tile<ROWS, V, TAIL>(p, a, b, m, n, tail);
}

using TileFn = void (*)(const PwConvParamsBf16&, const bf16*, const bf16*, int64_t, int64_t, int64_t, int);
template <int V, bool TAIL, std::size_t... I>
constexpr std::array<TileFn, sizeof...(I)> by_rows(std::index_sequence<I...>) {
  return {{&tiles<int(I) + 1, V, TAIL>...}};
}
template <int V, bool TAIL>
constexpr auto kByRows = by_rows<V, TAIL>(std::make_index_sequence<mr_for(V)>{});

inline TileFn select(int rows, int v, bool tail) {
  switch (v) {
    case 1: return tail ? kByRows<1, true>[rows - 1] : kByRows<1, false>[rows - 1];
    case 2: return tail ? kByRows<2, true>[rows - 1] : kByRows<2, false>[rows - 1];
    case 3: return tail ? kByRows<3, true>[rows - 1] : kByRows<3, false>[rows - 1];
    default: return tail ? kByRows<4, true>[rows - 1] : kByRows<4, false>[rows - 1];
  }
}

// Rows [m_begin, m_end) (a at row m_begin, row stride K) x columns [n_begin, n_end): the
// columns spread evenly over the fewest panels of up to 4 vectors, row tiles inside a panel.
void run(const PwConvParamsBf16& p, const bf16* a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const int64_t nvec = (n_end - n_begin + 15) / 16, panels = (nvec + NV - 1) / NV;
  int64_t n = n_begin;
  for (int64_t pi = 0; pi < panels; ++pi) {
    const int v = int(nvec / panels + (pi < nvec % panels ? 1 : 0));
    const int cols = int(std::min<int64_t>(int64_t(v) * 16, n_end - n));
    const int tail = cols - (v - 1) * 16;
    const bool is_tail = tail != 16;
    const bf16* b = p.w + 2 * n;
    const int mr = mr_for(v);
    const int64_t m_full = m_begin + (m_end - m_begin) / mr * mr;
    if (m_full > m_begin) select(mr, v, is_tail)(p, a, b, m_begin, m_full, n, tail);
    if (m_full < m_end) select(int(m_end - m_full), v, is_tail)(p, a + (m_full - m_begin) * p.K, b, m_full, m_end, n, tail);
    n += cols;
  }
}

}  // namespace

PwTile pwconv_tile_k_pairs() { return {mr_for(NV), 16 * NV, 16}; }

// With the SE scale the rows are scaled (x' = bf16(x * s), float32 product rounded once, as
// PyTorch's bf16 x * s is) into a scratch copy, per sample segment, in blocks of ~64 KB.
void pwconv_bn_act_k_pairs(const PwConvParamsBf16& p, int64_t m_begin, int64_t m_end, int64_t n_begin,
                           int64_t n_end) {
  if (m_begin >= m_end || n_begin >= n_end) return;
  const int64_t K = p.K;
  if (!p.in_scale) return run(p, p.x + m_begin * K, m_begin, m_end, n_begin, n_end);
  const int64_t block = std::max<int64_t>(12, 32768 / std::max<int64_t>(K, 1));
  thread_local std::vector<bf16> scratch;
  if (scratch.size() < size_t(block * K)) scratch.resize(size_t(block * K));
  bf16* xs = scratch.data();
  for (int64_t m = m_begin; m < m_end;) {
    const int64_t s = m / p.HW, end = std::min({m_end, m + block, (s + 1) * p.HW});
    const float* sc = p.in_scale + s * K;
    for (int64_t r = 0; r < end - m; ++r) {
      const bf16* src = p.x + (m + r) * K;
      bf16* dst = xs + r * K;
      for (int64_t k = 0; k < K; k += Vec::N)
        store_any(dst + k, K - k, mul(load_any(src + k, K - k), load_any(sc + k, K - k)));
    }
    run(p, xs, m, end, n_begin, n_end);
    m = end;
  }
}

}  // namespace avx512_bf16
}  // namespace mbv3
