// Fused 1x1 conv + bias + activation (+ residual, + SE input scale) over NHWC float32 or bf16
// (see the bf16 entry point at the end), written once against `Vec` and compiled once per ISA
// (pwconv_bn_act_<isa>.cpp).
//
// It is a GEMM y[M, Cout] = x[M, K] * w[K, Cout] with a fused epilogue.  Register tile: MR rows
// x up to NV vectors of output columns (4 with 32 registers, else 3); per k, the tile's vectors
// of w's row k are loaded, each of the MR x values is broadcast and FMA'd into MR * V
// accumulators (6 x 64, 8 x 48, 12 x 32, 12 x 16 on AVX-512; 4 x 24, 6 x 16, 12 x 8 on AVX2;
// 6 x 16, 8 x 12, 12 x 8, 12 x 4 on NEON).  6 x 4 vectors writes whole 64-channel rows and
// loads fewer values per FMA than 12 x 2 (16 -> 64 layer: 3% faster).
// AVX2's K = 16, 24 and 40 tiles have K fixed at compile time (kSmallKs).
// The row tail uses smaller-MR instantiations (RowTiles, pwconv_bn_act.h), the column tail
// masked stores (and masked loads only where a full-width load could leave the weight buffer,
// see tile()).  On AVX-512 (float weights) a last vector of at most 8 columns (Cout = 24, 40,
// 72, 120, 184, 200) runs as a 256-bit Half (HALF): cores that split 512-bit FMAs in two would
// spend a whole 512-bit FMA on 8 live lanes.  Same FMAs per output in the same order, so the same bits.
// Accumulators start from the bias (short sums) or take it last; epilogue on the way to the store:
// activation, + residual.
//
// Weight layout: read in place, K-major (row k = the Cout weights of input channel k; any row
// stride), so a tile's weights are V contiguous vectors per k; either one [K, Cout] matrix
// (mbv3_fast.ops.pack_pw_weight: a [Cin, Cout] buffer viewed as [Cout, Cin, 1, 1]) or panels
// of P columns, each its own contiguous K-major matrix (PwConvArgs::panel,
// mbv3_fast.ops.pack_pw_weight_panels), walked stretch by stretch (for_weight_stretches).
// With the ISA's own P a tile's weights are one stream; the model packs so where that measured
// as a gain (kPackPanels; README, "Design notes"), and keeps one matrix elsewhere (with K <=
// 960 a panel stays in L2 while the row tiles pass).  Same FMAs in the same order either way,
// so the same bits.  A plain [Cout, Cin] weight is transposed on every call by the binding
// (+37% time summed over the layers).
//
// SE scale (in_scale[n, k], per sample): folded into a scaled copy of the rows or of the weight
// columns this call computes, whichever is smaller (see pwconv_bn_act), so the hot loop is
// unchanged (+0-10% per layer, vs +10-20% for a separate x * s pass).
#pragma once
#include <algorithm>
#include <array>
#include <type_traits>
#include <utility>
#include <vector>

#include "pwconv_bn_act.h"
#include "common/prefetch.h"
#include "pwconv_bn_act_epilogue.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

constexpr int NV = Vec::kRegs >= 32 ? 4 : 3;  // at most this many vectors per tile row
constexpr int NR = NV * Vec::N;  // so at most NR columns per tile
// Rows per tile for V vectors: as many as the registers hold beside V weight vectors and the
// broadcast (6 x 4, 8 x 3, 12 x 2, 12 x 1 on AVX-512), so that narrow panels (Cout = 16, 24)
// still do many FMAs per load.
constexpr int mr_for(int v) { return std::min(v == 3 ? 8 : 12, (Vec::kRegs - v - 1) / v); }
constexpr int MR = mr_for(1);    // the largest
// Accuracy: a 960-term serial FMA chain is up to 3x further off than PyTorch's (blocked)
// float32 result; summing blocks of KC terms and then the block sums keeps ours within the
// tolerance rule (tests/tolerance.py) for every MobileNetV3 layer, for ~2% of the time.
constexpr int64_t KC = 64;
// Weight rows the first tile of a layer prefetches ahead of its reads (see tiles()).
constexpr int64_t kLead = 16;
// Whether the tiles prefetch weights (the next panel's, the first panel's rows kLead ahead; see
// run()).  Per ISA, as measured (README, "Design notes"): a gain on Zen 4 (AVX-512), a loss on
// Zen 3 (AVX2), whose hardware prefetchers alone did as well.  NEON and scalar: not measured.
#if defined(MBV3_ISA_AVX2)
constexpr bool kPrefetchWeights = false;
#else
constexpr bool kPrefetchWeights = true;
#endif
// Whether the model packs float32 weights in panels of NR columns for this ISA (PwConvArgs::
// panel): a gain on Zen 3 (AVX2; README, "Design notes"); not measured on the others, which
// read the K-major weight in place (and read panels correctly when given them).
#if defined(MBV3_ISA_AVX2)
constexpr bool kPackPanels = true;
#else
constexpr bool kPackPanels = false;
#endif

// HALF (AVX-512, float weights, a column tail of at most Half::N): the tile's last vector is a
// Half, accumulated in its own registers (H h[ROWS]) and held in acc[r][V - 1]'s low lanes only
// for the epilogue; the other vectors are the VF = V - 1 first.  Writing the Half back into
// acc's zmm inside the loop cost a move per FMA (GCC 12).
template <bool HALF>
using HalfOr = std::conditional_t<HALF, Half, Vec>;
template <int V, bool HALF>
constexpr int kFullVecs = HALF ? V - 1 : V;

// K step k of one tile: acc[r] += a[r][k] * b[k] (MASKED: the last vector's weight loads
// masked).  Plain inline functions, not lambdas: GCC 12 kept lambda-captured accumulators on
// the stack (48 extra moves per tile, a third of the K = 16 layers' time).
template <int ROWS, int V, bool MASKED, bool HALF, class TW>
[[gnu::always_inline]] inline void k_step(Vec (&acc)[ROWS][V], HalfOr<HALF> (&h)[ROWS], const float* a,
                                          int64_t K, const TW* bk, int64_t k, int tail) {
  using H = HalfOr<HALF>;
  constexpr int VF = kFullVecs<V, HALF>;
  Vec bv[V];
#pragma GCC unroll 8
  for (int v = 0; v < VF; ++v)
    bv[v] = (MASKED && !HALF && v == V - 1) ? Vec::load_tail(bk + v * Vec::N, tail) : Vec::load(bk + v * Vec::N);
  [[maybe_unused]] H bh;
  if constexpr (HALF) bh = MASKED ? H::load_tail(bk + VF * Vec::N, tail) : H::load(bk + VF * Vec::N);
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r) {
    const Vec av = Vec::set1(a[r * K + k]);
#pragma GCC unroll 8
    for (int v = 0; v < VF; ++v) acc[r][v] = fmadd(av, bv[v], acc[r][v]);
    if constexpr (HALF) h[r] = fmadd(H::low(av), bh, h[r]);
  }
}

// K steps [k0, k1) of one tile.  The step that also prefetches (`lead`: the first tile of a
// layer) has its own loop, and the plain one is unrolled by 2: with AVX2's 12 FMAs per step,
// the loop's own instructions (a lead test, the pointer bumps, the branch) had made the step
// front-end bound on Zen 3.
template <int ROWS, int V, bool MASKED, bool HALF, class TW>
[[gnu::always_inline]] inline void k_steps(Vec (&acc)[ROWS][V], HalfOr<HALF> (&h)[ROWS], const float* a,
                                           int64_t K, const TW* b, int64_t ldb, int64_t k0, int64_t k1,
                                           int tail, const TW* lead) {
  if (lead) {
    for (int64_t k = k0; k < k1; ++k) {
      if (k + kLead < K)
        prefetch_rows_l2(lead, ldb * int64_t(sizeof(TW)), k + kLead, k + kLead + 1, V * Vec::N * int64_t(sizeof(TW)));
      k_step<ROWS, V, MASKED, HALF>(acc, h, a, K, b + k * ldb, k, tail);
    }
    return;
  }
#pragma GCC unroll 2
  for (int64_t k = k0; k < k1; ++k) k_step<ROWS, V, MASKED, HALF>(acc, h, a, K, b + k * ldb, k, tail);
}

// Steps [k0, k1); with a column tail, rows from k_full on use masked loads (see tile()).
template <int ROWS, int V, bool TAIL, bool HALF, class TW>
[[gnu::always_inline]] inline void k_block(Vec (&acc)[ROWS][V], HalfOr<HALF> (&h)[ROWS], const float* a,
                                           int64_t K, const TW* b, int64_t ldb, int64_t k0, int64_t k1,
                                           int64_t k_full, int tail, const TW* lead) {
  const int64_t kf = TAIL ? std::min(k1, std::max(k0, k_full)) : k1;
  k_steps<ROWS, V, false, HALF>(acc, h, a, K, b, ldb, k0, kf, tail, lead);
  if constexpr (TAIL) k_steps<ROWS, V, true, HALF>(acc, h, a, K, b, ldb, kf, k1, tail, lead);
}

// All K = KS steps of a small-K tile, unrolled at compile time (see kSmallKs).
template <int ROWS, int V, bool HALF, class TW, int... k>
[[gnu::always_inline]] inline void k_unrolled(Vec (&acc)[ROWS][V], HalfOr<HALF> (&h)[ROWS], const float* a,
                                              const TW* b, std::integer_sequence<int, k...>) {
  constexpr int64_t KS = sizeof...(k);
  (k_step<ROWS, V, false, HALF>(acc, h, a, KS, b + k * NR, k, 0), ...);
}

constexpr int64_t kBiasFirstMaxK = 24;

// Vector v of the bias of the tile at column n (VT: Vec, or Half for a HALF tile's last).
template <class VT, int V, bool TAIL, class T>
[[gnu::always_inline]] inline VT bias_vec(const PwConvArgs<T>& p, int64_t n, int v, int tail) {
  return (TAIL && v == V - 1) ? VT::load_tail(p.b + n + v * Vec::N, tail) : VT::load(p.b + n + v * Vec::N);
}

// One ROWS x (V vectors) tile at (m, n); the last vector holds `tail` columns (1..N; HALF:
// 1..Half::N, see HalfOr).  b points at w[0][n], row stride ldb.  Column tail: rows k < k_full
// are read with full vector loads (the extra lanes read the next weight row: in bounds, never
// stored); only the last rows use masked loads, which are several times slower on some cores
// (README, "Design notes").
template <int ROWS, int V, bool TAIL, bool HALF, int KS, class T>
[[gnu::always_inline]] inline void tile(const PwConvArgs<T>& p, const float* a, const T* b, int64_t ldb,
                                        int64_t k_full, int64_t m, int64_t n, int tail, const T* lead) {
  using H = HalfOr<HALF>;
  constexpr int VF = kFullVecs<V, HALF>;
  static_assert(KS == 0 || (KS <= KC && !TAIL), "small-K tiles: one K block, full columns");
  const int64_t K = KS ? KS : p.K;
  // Short sums start from the bias (one add less per output, which the K = 16 and 24 layers
  // feel); longer ones add it last, because an O(1) bias carried through the chain makes every
  // partial sum larger and so its roundings (K = 56: up to 2.5x further off).
  const bool bias_first = K <= kBiasFirstMaxK;
  Vec acc[ROWS][V];
  [[maybe_unused]] H h[ROWS];
#pragma GCC unroll 8
  for (int v = 0; v < VF; ++v) {
    const Vec init = !bias_first ? Vec::zero() : bias_vec<Vec, V, TAIL>(p, n, v, tail);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) acc[r][v] = init;
  }
  if constexpr (HALF) {
    const H init = !bias_first ? H::zero() : bias_vec<H, V, TAIL>(p, n, V - 1, tail);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) h[r] = init;
  }
  // K in blocks of KC: each block sums into fresh accumulators, the blocks' sums are added up
  // in an L1 buffer (see KC).
  if constexpr (KS > 0) k_unrolled<ROWS, V, HALF>(acc, h, a, b, std::make_integer_sequence<int, KS>{});
  else k_block<ROWS, V, TAIL, HALF>(acc, h, a, K, b, ldb, 0, std::min(K, KC), k_full, tail, lead);
  if (KS == 0 && K > KC) {
    alignas(64) float total[ROWS][V][Vec::N];
    for (int r = 0; r < ROWS; ++r) {
      for (int v = 0; v < VF; ++v) acc[r][v].store(total[r][v]);
      if constexpr (HALF) h[r].store(total[r][V - 1]);
    }
    for (int64_t k0 = KC; k0 < K; k0 += KC) {
      for (int r = 0; r < ROWS; ++r) {
        for (int v = 0; v < VF; ++v) acc[r][v] = Vec::zero();
        if constexpr (HALF) h[r] = H::zero();
      }
      k_block<ROWS, V, TAIL, HALF>(acc, h, a, K, b, ldb, k0, std::min(K, k0 + KC), k_full, tail, lead);
      for (int r = 0; r < ROWS; ++r) {
        for (int v = 0; v < VF; ++v) {
          acc[r][v] = add(acc[r][v], Vec::load(total[r][v]));
          if (k0 + KC < K) acc[r][v].store(total[r][v]);
        }
        if constexpr (HALF) {
          h[r] = add(h[r], H::load(total[r][V - 1]));
          if (k0 + KC < K) h[r].store(total[r][V - 1]);
        }
      }
    }
  }
  if (!bias_first) {
#pragma GCC unroll 8
    for (int v = 0; v < VF; ++v) {
      const Vec bias = bias_vec<Vec, V, TAIL>(p, n, v, tail);
#pragma GCC unroll 16
      for (int r = 0; r < ROWS; ++r) acc[r][v] = add(acc[r][v], bias);
    }
    if constexpr (HALF) {
      const H bias = bias_vec<H, V, TAIL>(p, n, V - 1, tail);
#pragma GCC unroll 16
      for (int r = 0; r < ROWS; ++r) h[r] = add(h[r], bias);
    }
  }
  if constexpr (HALF) {
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) acc[r][V - 1] = h[r].as_vec();  // the store reads `tail` lanes
  }
  store_tile<ROWS, V, TAIL>(acc, p, m, n, tail);
}

// Tiles of ROWS rows down [m, m_end) (a multiple of ROWS), a pointing at row m: one call per
// panel, so a tile costs no call, register saves or parameter loads.  KS: K fixed at compile
// time (kSmallKs), or 0 for p.K.  `next` (or null): the next panel's weights, `next_bytes` per
// row; each tile prefetches its share of their rows.  The first panel has no panel before it:
// its first tile prefetches its own rows kLead ahead.
template <int ROWS, int V, bool TAIL, bool HALF, int KS, class T>
void tiles(const PwConvArgs<T>& p, const float* a, const T* b, int64_t ldb, int64_t k_full,
           int64_t m, int64_t m_end, int64_t n, int tail, const T* next, int64_t next_bytes, bool first) {
  const int64_t count = (m_end - m) / ROWS;
  for (int64_t t = 0; m < m_end; ++t, m += ROWS, a += ROWS * p.K) {
    if (next) prefetch_rows_l2(next, ldb * int64_t(sizeof(T)), t * p.K / count, (t + 1) * p.K / count, next_bytes);
    tile<ROWS, V, TAIL, HALF, KS>(p, a, b, ldb, k_full, m, n, tail, KS == 0 && first && t == 0 ? b : nullptr);
  }
}

template <class T>
using TileFn = void (*)(const PwConvArgs<T>&, const float*, const T*, int64_t, int64_t, int64_t,
                        int64_t, int64_t, int, const T*, int64_t, bool);

template <class T, int V, bool TAIL, bool HALF, std::size_t... I>
constexpr std::array<TileFn<T>, sizeof...(I)> by_rows(std::index_sequence<I...>) {
  return {{&tiles<int(I) + 1, V, TAIL, HALF, 0, T>...}};
}
template <class T, int V, bool TAIL, bool HALF = false>
constexpr auto kByRows = by_rows<T, V, TAIL, HALF>(std::make_index_sequence<mr_for(V)>{});

// Whether a tail of at most Half::N columns runs as a Half (float weights only: the
// bf16-widening instantiation keeps 16-lane tails).
template <class T>
constexpr bool kHalfTail = kHasHalf && std::is_same_v<T, float>;

// Small K (AVX2): a full tile of a K = 16, 24 or 40 layer whose weights come in the model's
// panels of NR columns runs with K and the weight row stride fixed at compile time, its K
// steps unrolled.  With few steps per tile the runtime loop's peeled steps and GCC's spills
// around them had been a large share (op alone on Zen 3: K = 16 and 24 -13..-20%, K = 40 -5%;
// K = 64 no gain; README, "Design notes").  Same FMAs in the same order, so the same bits.
// Not measured on the other ISAs, which keep the runtime loop.
#if defined(MBV3_ISA_AVX2)
constexpr bool kSmallKTiles = true;
#else
constexpr bool kSmallKTiles = false;
#endif
constexpr int kSmallKs[] = {16, 24, 40};
template <class T, int V, std::size_t... I>
constexpr std::array<TileFn<T>, sizeof...(I)> by_small_k(std::index_sequence<I...>) {
  return {{&tiles<mr_for(V), V, false, false, kSmallKs[I], T>...}};
}
template <class T, int V>
constexpr auto kBySmallK = by_small_k<T, V>(std::make_index_sequence<std::size(kSmallKs)>{});
// The small-K tiles for K and v vectors of columns, or null.
template <class T>
inline TileFn<T> select_small_k(int v, int64_t K) {
  if constexpr (kSmallKTiles) {
    for (std::size_t i = 0; i < std::size(kSmallKs); ++i) {
      if (kSmallKs[i] != K) continue;
      if constexpr (NV == 4)
        if (v == 4) return kBySmallK<T, 4>[i];
      return v == 1 ? kBySmallK<T, 1>[i] : v == 2 ? kBySmallK<T, 2>[i] : kBySmallK<T, 3>[i];
    }
  }
  return nullptr;
}

// Tiles of `rows` rows and v vectors; `cols`: full (Vec::N), masked tail, or Half tail.
enum class Cols { Full, Tail, Half };
template <class T, int V>
inline TileFn<T> select_v(int rows, Cols cols) {
  if constexpr (kHalfTail<T>)
    if (cols == Cols::Half) return kByRows<T, V, true, true>[rows - 1];
  return cols == Cols::Full ? kByRows<T, V, false>[rows - 1] : kByRows<T, V, true>[rows - 1];
}
static_assert(NV == 3 || NV == 4, "select() lists up to 4 vectors");
template <class T>
inline TileFn<T> select(int rows, int v, Cols cols) {
  if constexpr (NV == 4)
    if (v == 4) return select_v<T, 4>(rows, cols);
  switch (v) {
    case 1: return select_v<T, 1>(rows, cols);
    case 2: return select_v<T, 2>(rows, cols);
    default: return select_v<T, 3>(rows, cols);
  }
}

// Panels of up to NV vectors outer (a panel's K x NR weights stay in L1/L2), row tiles inner.
// The columns are spread evenly over the fewest panels (64 = 32 + 32, not 48 + 16), the
// vector tail going to the last panel.  While a panel is computed, the next one's weights are
// prefetched (where kPrefetchWeights): at batch 1 a layer's weights come from L3 or DRAM, and
// the strided rows (one panel's slice of each K row) were read at a fraction of the bandwidth a
// stream gets.
// a points at row m_begin of x (row stride K); b at the weight of column n_begin, row stride
// ldb; `extent` floats from b are readable.
template <class T>
void run(const PwConvArgs<T>& p, const float* a, const T* b, int64_t ldb, int64_t extent,
         int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  const EvenPanels panels((n_end - n_begin + Vec::N - 1) / Vec::N, NV);
  int64_t n = n_begin;
  for (int64_t pi = 0; pi < panels.count; ++pi) {
    const int v = int(panels.vecs(pi));
    const int cols = int(std::min<int64_t>(int64_t(v) * Vec::N, n_end - n));
    const int tail = cols - (v - 1) * Vec::N;
    const Cols kind = tail == Vec::N                       ? Cols::Full
                      : kHalfTail<T> && tail <= Half::N ? Cols::Half
                                                        : Cols::Tail;
    // Rows whose full-width read [k * ldb, k * ldb + width) stays within the readable extent
    // (width: v vectors, the last a Half for Cols::Half).
    const int64_t width = int64_t(v - 1) * Vec::N + (kind == Cols::Half ? Half::N : Vec::N);
    const int64_t room = extent - (n - n_begin) - width;
    const int64_t k_full = room < 0 ? 0 : ldb == 0 ? p.K : std::min(p.K, room / ldb + 1);
    const int mr = mr_for(v);
    const TileFn<T> small = kind == Cols::Full && ldb == NR ? select_small_k<T>(v, p.K) : nullptr;
    const TileFn<T> full = small ? small : select<T>(mr, v, kind);
    const T* bp = b + (n - n_begin);
    const int64_t next_cols = pi + 1 < panels.count ? std::min<int64_t>(panels.vecs(pi + 1) * Vec::N, n_end - n - cols) : 0;
    const T* next = kPrefetchWeights && next_cols > 0 ? bp + cols : nullptr;
    const int64_t next_bytes = next_cols * int64_t(sizeof(T));
    const RowTiles rt(m_end - m_begin, mr, small == nullptr);  // (small-K tiles: mr rows only)
    const int64_t m_full = m_begin + rt.full_rows;
    const bool lead = kPrefetchWeights && pi == 0;
    if (m_full > m_begin) full(p, a, bp, ldb, k_full, m_begin, m_full, n, tail, next, next_bytes, lead);
    if (m_full < m_end)
      select<T>(rt.rest_rows, v, kind)(p, a + (m_full - m_begin) * p.K, bp, ldb, k_full, m_full, m_end,
                                                 n, tail, m_full > m_begin ? nullptr : next, next_bytes,
                                                 lead && m_full == m_begin);
    n += cols;
  }
}

// Calls f(b, ldb, extent, n0, n1) for each stretch [n0, n1) of columns [n_begin, n_end) that
// lies in one K-major block of the weight: b points at w[0][n0], row stride ldb, `extent`
// values from b readable.  K-major: one stretch; panels (p.panel): one per panel touched.
template <class T, class F>
void for_weight_stretches(const PwConvArgs<T>& p, int64_t n_begin, int64_t n_end, F&& f) {
  const int64_t K = p.K;
  if (p.panel == 0) return f(p.w + n_begin, p.ldw, K == 0 ? 0 : (K - 1) * p.ldw + (n_end - n_begin), n_begin, n_end);
  const int64_t P = p.panel, total = (p.Cout + P - 1) / P * P * K;
  for (int64_t n = n_begin; n < n_end;) {
    const int64_t n1 = std::min(n_end, (n / P + 1) * P);
    const int64_t at = n / P * P * K + n % P;
    f(p.w + at, P, total - at, n, n1);
    n = n1;
  }
}

}  // namespace

PwTile pwconv_tile() { return {mr_for(NV), NR, Vec::N, kPackPanels ? NR : 0}; }

void pwconv_bn_act(const PwConvParams& p, int64_t m_begin, int64_t m_end, int64_t n_begin,
                   int64_t n_end) {
  if (m_begin >= m_end || n_begin >= n_end) return;
  const int64_t K = p.K, cols = n_end - n_begin;
  // Rows [m, m1) of `a` (row stride K) times the weight as given.
  auto gemm = [&](const float* a, int64_t m, int64_t m1) {
    for_weight_stretches(p, n_begin, n_end, [&](const float* b, int64_t ldb, int64_t extent, int64_t n0, int64_t n1) {
      run(p, a, b, ldb, extent, m, m1, n0, n1);
    });
  };
  if (!p.in_scale) return gemm(p.x + m_begin * K, m_begin, m_end);
  // SE scale, per sample segment of the rows: a scaled copy of the rows (x'[m][k] = x[m][k] *
  // s[k]) or of the weight columns (w'[k][n] = w[k][n] * s[k]), as p.scale_rows says (the
  // caller's choice by layer shape: (x*s)*w and x*(w*s) round differently, and 1 and 2 threads
  // must give the same bits).  Either is a small fraction of the FMAs, and the hot loop is
  // unchanged.  The weight copy's rows are padded to whole vectors (+ one spare vector) so
  // every read of it is a full-width load.
  const int64_t ld = (cols + Vec::N - 1) / Vec::N * Vec::N;
  thread_local std::vector<float> scratch;
  for (int64_t m = m_begin; m < m_end;) {
    const int64_t s = m / p.HW, seg_end = std::min(m_end, (s + 1) * p.HW), rows = seg_end - m;
    const float* sc = p.in_scale + s * K;
    if (p.scale_rows) {
      if (scratch.size() < size_t(rows * K)) scratch.resize(size_t(rows * K));
      float* xs = scratch.data();
      for (int64_t r = 0; r < rows; ++r) {
        const float* src = p.x + (m + r) * K;
        float* dst = xs + r * K;
        int64_t k = 0;
        for (; k + Vec::N <= K; k += Vec::N) mul(Vec::load(src + k), Vec::load(sc + k)).store(dst + k);
        if (k < K) {
          const int t = int(K - k);
          mul(Vec::load_tail(src + k, t), Vec::load_tail(sc + k, t)).store_tail(dst + k, t);
        }
      }
      gemm(xs, m, seg_end);
    } else {
      const size_t need = size_t(K * ld + Vec::N);
      if (scratch.size() < need) scratch.resize(need);
      float* ws = scratch.data();
      // Row by row, stretch by stretch left to right: a stretch tail's zero-padded store runs
      // into the next stretch's columns (or the next row's first), which are written after it.
      for (int64_t k = 0; k < K; ++k) {
        const Vec f = Vec::set1(sc[k]);
        for_weight_stretches(p, n_begin, n_end, [&](const float* b, int64_t ldb, int64_t, int64_t n0, int64_t n1) {
          const float* src = b + k * ldb;
          float* dst = ws + k * ld + (n0 - n_begin);
          const int64_t w = n1 - n0;
          int64_t j = 0;
          for (; j + Vec::N <= w; j += Vec::N) mul(Vec::load(src + j), f).store(dst + j);
          if (j < w) mul(Vec::load_tail(src + j, int(w - j)), f).store(dst + j);  // zero-padded
        });
      }
      std::fill(ws + K * ld, ws + K * ld + Vec::N, 0.f);
      run(p, p.x + m * K, ws, ld, K * ld + Vec::N, m, seg_end, n_begin, n_end);
    }
    m = seg_end;
  }
}

// bf16: the rows are widened (and SE-scaled: x' = x * s in float32) into a float32 copy, block
// by block, so the hot loop broadcasts float32 as for float; the weights are widened as they
// are loaded, the output rounded once on store.  Every output is one tile's sum whatever the
// blocking, so the blocks change nothing but the scratch size.
void pwconv_bn_act(const PwConvParamsBf16& p, int64_t m_begin, int64_t m_end, int64_t n_begin,
                   int64_t n_end) {
  if (m_begin >= m_end || n_begin >= n_end) return;
  const int64_t K = p.K;
  const int64_t block = std::max<int64_t>(MR, 32768 / std::max<int64_t>(K, 1));
  thread_local std::vector<float> scratch;
  if (scratch.size() < size_t(block * K)) scratch.resize(size_t(block * K));
  float* xs = scratch.data();
  for (int64_t m = m_begin; m < m_end;) {
    const int64_t s = m / p.HW;
    const int64_t end = std::min({m_end, m + block, p.in_scale ? (s + 1) * p.HW : m_end});
    const float* sc = p.in_scale ? p.in_scale + s * K : nullptr;
    for (int64_t r = 0; r < end - m; ++r) {
      const bf16* src = p.x + (m + r) * K;
      float* dst = xs + r * K;
      for (int64_t k = 0; k < K; k += Vec::N) {
        const Vec v = load_any(src + k, K - k);
        store_any(dst + k, K - k, sc ? mul(v, load_any(sc + k, K - k)) : v);
      }
    }
    for_weight_stretches(p, n_begin, n_end, [&](const bf16* b, int64_t ldb, int64_t extent, int64_t n0, int64_t n1) {
      run(p, xs, b, ldb, extent, m, end, n0, n1);
    });
    m = end;
  }
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
