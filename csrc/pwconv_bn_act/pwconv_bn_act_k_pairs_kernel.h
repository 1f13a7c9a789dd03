// bf16 fused 1x1 conv on bf16 dot products: y = act(x * w + b) (+ residual), x and w bf16, sums
// in float32 by a pair dot product per lane (acc += a0 * b0 + a1 * b1): vdpbf16ps on
// AVX512_BF16 (16 lanes), BFDOT on NEON with FEAT_BF16 (4 lanes).  Written once against `Vec`
// and the three primitives of pwconv_bn_act_k_pairs_<isa>.cpp (load_pairs, bcast_pair, dot),
// compiled once per ISA that has them (the unit defines MBV3_K_PAIRS_NS, the namespace of the
// entry points).
//
// Weights packed in K pairs (pwconv_bn_act.h): per pair row, one vector's columns (w[k][n],
// w[k+1][n]) are one full-width load, and the x pair (x[m][k], x[m][k+1]) one 32-bit
// broadcast.  Register tile: MR rows x V vectors (6 x 4, 8 x 3, 12 x 2, 12 x 1: accumulators +
// V weights + the broadcast within 32 registers), panels of up to 4 vectors outer, row tiles
// inner, as the float kernel (pwconv_bn_act_kernel.h).  Packed rows are padded to 16 columns,
// so every weight load is full width.  K is never blocked: every output is one chain over all
// pairs, so the result does not depend on the tiling or the thread split.
//
// Odd K: the last pair broadcasts x[m][K-1] with a zero high half (never the element past the
// row: a NaN there would reach the sum as NaN * 0) and masks the weights' high half too.
// Rounding: vdpbf16ps ignores MXCSR, rounds to nearest even and flushes denormal inputs and
// outputs to zero; BFDOT (without FEAT_EBF16) also flushes denormals and may round its pair
// sum once: products of bf16 values below 2^-126 vanish, far below bf16's resolution of an
// O(1) sum.  Both are held to the tolerance rule, not to bit equality with float32.
#pragma once
#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "pwconv_bn_act.h"
#include "common/prefetch.h"
#include "pwconv_bn_act_epilogue.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

constexpr int NV = 4;
constexpr int mr_for(int v) { return v == 4 ? 6 : v == 3 ? 8 : 12; }
constexpr int L = Vec::N;  // columns per vector
constexpr int64_t kLead = 16;  // pair rows the first tile prefetches ahead (see tiles())

static inline uint32_t pair_at(const bf16* p) {
  uint32_t u;
  std::memcpy(&u, p, sizeof u);
  return u;
}

// One ROWS x V-vector tile at (m, n): a = x row m (row stride K), b = the pair row 0 of column n
// (pair row stride 2 * ldw).  The last vector stores `tail` columns (1..L); HALF (a tail of at
// most L / 2, where kHalfPairs): it loads and multiplies only its low half.
template <int ROWS, int V, bool TAIL, bool HALF>
[[gnu::always_inline]] inline void tile(const PwConvParamsBf16& p, const bf16* a, const bf16* b, int64_t m,
                                        int64_t n, int tail, bool lead) {
  const int64_t K = p.K, KP = K / 2, ldb = 2 * p.ldw;
  Vec acc[ROWS][V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    const Vec bias = (TAIL && v == V - 1) ? Vec::load_tail(p.b + n + L * v, tail) : Vec::load(p.b + n + L * v);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) acc[r][v] = bias;
  }
  for (int64_t kp = 0; kp < KP; ++kp) {
    const bf16* bk = b + kp * ldb;
    if (lead && kp + kLead < KP) prefetch_rows_l2(b, 2 * ldb, kp + kLead, kp + kLead + 1, 4 * V * L);
    PairVec bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = HALF && v == V - 1 ? load_pairs_half(bk + 2 * L * v) : load_pairs(bk + 2 * L * v);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
      const PairVec av = bcast_pair(pair_at(a + r * K + 2 * kp));
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = HALF && v == V - 1 ? dot_half(acc[r][v], av, bv[v]) : dot(acc[r][v], av, bv[v]);
    }
  }
  if (K & 1) {
    const bf16* bk = b + KP * ldb;
    PairVec bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      bv[v] = low_halves(HALF && v == V - 1 ? load_pairs_half(bk + 2 * L * v) : load_pairs(bk + 2 * L * v));
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
      const PairVec av = bcast_pair(a[r * K + K - 1].bits);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = HALF && v == V - 1 ? dot_half(acc[r][v], av, bv[v]) : dot(acc[r][v], av, bv[v]);
    }
  }
  store_tile<ROWS, V, TAIL>(acc, p, m, n, tail);
}

// Tiles of ROWS rows down [m, m_end) (a multiple of ROWS), a at row m.  `next` (or null): the
// next panel's pair rows, `next_bytes` per row; each tile prefetches its share (as the float
// kernel does, pwconv_bn_act_kernel.h); the first panel's first tile prefetches its own pair
// rows kLead ahead.
template <int ROWS, int V, bool TAIL, bool HALF>
void tiles(const PwConvParamsBf16& p, const bf16* a, const bf16* b, int64_t m, int64_t m_end, int64_t n, int tail,
           const bf16* next, int64_t next_bytes, bool first) {
  const int64_t count = (m_end - m) / ROWS, pair_rows = (p.K + 1) / 2;
  for (int64_t t = 0; m < m_end; ++t, m += ROWS, a += ROWS * p.K) {
    if (next)
      prefetch_rows_l2(next, 4 * p.ldw, t * pair_rows / count, (t + 1) * pair_rows / count, next_bytes);
    tile<ROWS, V, TAIL, HALF>(p, a, b, m, n, tail, first && t == 0);
  }
}

using TileFn = void (*)(const PwConvParamsBf16&, const bf16*, const bf16*, int64_t, int64_t, int64_t, int,
                        const bf16*, int64_t, bool);
template <int V, bool TAIL, bool HALF, std::size_t... I>
constexpr std::array<TileFn, sizeof...(I)> by_rows(std::index_sequence<I...>) {
  return {{&tiles<int(I) + 1, V, TAIL, HALF>...}};
}
template <int V, bool TAIL, bool HALF = false>
constexpr auto kByRows = by_rows<V, TAIL, HALF>(std::make_index_sequence<mr_for(V)>{});

template <int V>
inline TileFn select_v(int rows, int tail) {
  if (tail == L) return kByRows<V, false>[rows - 1];
  if constexpr (kHalfPairs)
    if (2 * tail <= L) return kByRows<V, true, true>[rows - 1];
  return kByRows<V, true>[rows - 1];
}

// The tile function for `rows` rows of V vectors whose last holds `tail` columns (1..L).
inline TileFn select(int rows, int v, int tail) {
  switch (v) {
    case 1: return select_v<1>(rows, tail);
    case 2: return select_v<2>(rows, tail);
    case 3: return select_v<3>(rows, tail);
    default: return select_v<4>(rows, tail);
  }
}

// Rows [m_begin, m_end) (a at row m_begin, row stride K) x columns [n_begin, n_end): the
// columns spread evenly over the fewest panels of up to 4 vectors, row tiles inside a panel
// (RowTiles).
void run(const PwConvParamsBf16& p, const bf16* a, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const EvenPanels panels((n_end - n_begin + L - 1) / L, NV);
  int64_t n = n_begin;
  for (int64_t pi = 0; pi < panels.count; ++pi) {
    const int v = int(panels.vecs(pi));
    const int cols = int(std::min<int64_t>(int64_t(v) * L, n_end - n));
    const int tail = cols - (v - 1) * L;
    const bf16* b = p.w + 2 * n;
    const int mr = mr_for(v);
    // The next panel: its vectors (whole, as the tile reads them) of every pair row.
    const bf16* next = pi + 1 < panels.count ? b + 2 * int64_t(v) * L : nullptr;
    const int64_t next_bytes = pi + 1 < panels.count ? 4 * panels.vecs(pi + 1) * L : 0;
    const RowTiles rt(m_end - m_begin, mr, true);
    const int64_t m_full = m_begin + rt.full_rows;
    if (m_full > m_begin) select(mr, v, tail)(p, a, b, m_begin, m_full, n, tail, next, next_bytes, pi == 0);
    if (m_full < m_end)
      select(rt.rest_rows, v, tail)(p, a + (m_full - m_begin) * p.K, b, m_full, m_end, n, tail,
                                    m_full > m_begin ? nullptr : next, next_bytes, pi == 0 && m_full == m_begin);
    n += cols;
  }
}

}  // namespace
}  // namespace MBV3_ISA_NS

// The entry points, in the namespace the unit names (MBV3_K_PAIRS_NS: avx512_bf16, neon_bf16).
namespace MBV3_K_PAIRS_NS {
using namespace ::mbv3::MBV3_ISA_NS;

PwTile pwconv_tile_k_pairs() { return {mr_for(NV), L * NV, L, 0}; }

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

}  // namespace MBV3_K_PAIRS_NS
}  // namespace mbv3
