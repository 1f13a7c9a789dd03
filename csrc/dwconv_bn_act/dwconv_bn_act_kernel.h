// Fused depthwise conv + bias + activation over NHWC float32 or bf16 (widened on load, float32
// sums, rounded on store), written once against `Vec` and compiled once per ISA
// (dwconv_bn_act_<isa>.cpp).  XNNPACK-style: channels in SIMD lanes,
// masked channel tails, bias folded into the epilogue, padding handled by skipping taps
// (never by a padded copy), activation applied on the way to the store.
//
// Work is split by output row; within a row, channel tiles outer (see row_specialised).
// Interior columns need no bounds checks; a row's first and last blocks leave their padding
// columns out at compile time (edge_block), and only rows too narrow for that test each tap.
//
// Accuracy: the specialised paths sum even and odd kernel rows in separate accumulators, the
// generic path one partial sum per kernel row (added pairwise); the bias comes last.  Short
// serial chains keep the rounding error at or below PyTorch's own (conv, then BatchNorm), as
// tests/tolerance.py demands.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "dwconv_bn_act.h"
#include "common/simd.h"
#if defined(MBV3_WITH_AVX512BF16)
#include "dwconv_bn_act_dp.h"  // bf16 tiles of 32 / 16 channels with vdpbf16ps
#endif

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

constexpr int kMaxK = 7;

// Compile-time geometry of the specialised paths; 0 = read it from the params at run time.
template <int K, int S, int D>
struct Geometry {
  static_assert(K > 0 || (S == 0 && D == 0), "the generic kernel size has generic stride/dilation");
  const int k, s, d;
  template <class T>
  explicit Geometry(const DwConvArgs<T>& p)
      : k(K > 0 ? K : p.k), s(S > 0 ? S : p.stride), d(D > 0 ? D : p.dil) {}
};

// Channel tails use common/simd.h's Lanes (Vec, or Half for tails of at most Half::N lanes).

// kBlock adjacent output columns [ow, ow + kBlock) of one channel tile, specialised geometry.
// With compile-time stride and dilation the shared input columns are loaded once (stride 1,
// k = 3: 6 loads feed 12 FMAs) and the independent accumulator chains hide the FMA latency.
// CHECKED blocks touch the padding or run past the row's end: out-of-range input columns read
// as zero and only real outputs are stored, so small maps (7x7) keep this schedule too.  (With
// an inf or NaN weight, 0 * w would be NaN where PyTorch adds no term: such weights take the
// generic loop, see dwconv_bn_act below.)
constexpr int kBlock = 4;

//
// Weights: the first HOIST kernel rows' weight vectors are loaded once per tile by the caller
// (`w`); the other rows' are loaded where they are used.  At most kHoistRows rows are hoisted:
// those that fit in the registers left beside the accumulators and input columns (all of 3x3
// on AVX-512/NEON, 3 of 5 rows for 5x5 stride 1); more would only add compiler spills.
constexpr int hoist_rows(int K, int S, int D) {
  return K == 0 ? 0 : std::max(0, std::min(K, (Vec::kRegs - 2 * kBlock - ((kBlock - 1) * S + (K - 1) * D + 1)) / K));
}
template <int K, int S, int D>
constexpr int kHoistRows = hoist_rows(K, S, D);

// Input columns a block of NB output columns reads.
constexpr int block_cols(int NB, int K, int S, int D) { return (NB - 1) * S + (K - 1) * D + 1; }

// NB < kBlock: the row's last, partial block, which computes only the NB columns it stores.
// L / R: the block's first L and last R input columns are known at compile time to lie in the
// padding (a row's first and last blocks, see edge_block): their taps are left out without a
// test.  CHECKED tests every column at run time instead (maps too narrow for that).
template <int K, int S, int D, Act A, int HOIST, int NB, bool CHECKED, int L = 0, int R = 0, class T,
          class LanesT, class V = typename LanesT::V>
inline void block(const DwConvArgs<T>& p, const T* const* rows, T* yrow, int64_t c,
                  LanesT lanes, int64_t ow, const V* w, V bias) {
  constexpr int kCols = block_cols(NB, K, S, D);
  static_assert(!CHECKED || (L == 0 && R == 0), "a checked block tests its columns at run time");
  const int64_t C = p.C, iw0 = ow * S - p.pad;
  V acc[2][NB];  // even / odd kernel rows (see the file comment)
  for (int j = 0; j < NB; ++j) acc[0][j] = acc[1][j] = V::zero();
  // Fully unrolled (pragmas): GCC 12 otherwise keeps the kh loop rolled in some instances,
  // indexing `in`/`w` through the stack; unrolled, the 1-thread sum over MobileNetV3-Large's
  // 15 layers went 666 -> 569 us (5x5 layers -23..-33%, harness A/B, bitwise same output).
#pragma GCC unroll 8
  for (int kh = 0; kh < K; ++kh) {
    if (!rows[kh]) continue;  // padding row: the same for the whole output row, predicted
    const T* px = rows[kh] + iw0 * C + c;
    V in[kCols];
#pragma GCC unroll 16
    for (int i = 0; i < kCols; ++i)
      in[i] = (i < L || i >= kCols - R || (CHECKED && (iw0 + i < 0 || iw0 + i >= p.W))) ? V::zero()
                                                                                       : lanes.load(px + i * C);
#pragma GCC unroll 8
    for (int kw = 0; kw < K; ++kw) {
      const V wt = kh < HOIST ? w[kh * K + kw] : lanes.load(p.w + (kh * K + kw) * C + c);
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) {
        const int i = j * S + kw * D;
        if (i < L || i >= kCols - R) continue;
        acc[kh & 1][j] = fmadd(in[i], wt, acc[kh & 1][j]);
      }
    }
  }
  for (int j = 0; j < NB; ++j)
    lanes.store(yrow + (ow + j) * C + c, activate<A>(add(add(acc[0][j], acc[1][j]), bias)));
}

// A block that reads padding columns.  float32 tiles of unmasked lanes at the row's start (the
// first P = (K - 1) / 2 * D columns, MobileNetV3's "same" padding) or end (1..P columns) take a
// block with those columns left out at compile time; anything else the checked block: masked
// channel tails, rows narrower than a block plus its padding, and bf16 (AVX512_BF16 has its own
// edge blocks in dwconv_bn_act_dp.h; elsewhere bf16 widens, a fallback kept small).
template <int K, int S, int D, Act A, int HOIST, int NB, class T, class LanesT, class V = typename LanesT::V>
inline void edge_block(const DwConvArgs<T>& p, const T* const* rows, T* yrow, int64_t c, LanesT lanes,
                       int64_t ow, const V* w, V bias) {
  constexpr int P = (K - 1) / 2 * D;
  if constexpr (!LanesT::kMasked && std::is_same_v<T, float>) {
    if (p.pad == P) {
      const int64_t iw0 = ow * S - P;
      const int64_t l = std::max<int64_t>(0, -iw0), r = std::max<int64_t>(0, iw0 + block_cols(NB, K, S, D) - p.W);
      if (l == P && r == 0) return block<K, S, D, A, HOIST, NB, false, P>(p, rows, yrow, c, lanes, ow, w, bias);
      if (l == 0 && r == 1) return block<K, S, D, A, HOIST, NB, false, 0, 1>(p, rows, yrow, c, lanes, ow, w, bias);
      if constexpr (P >= 2)
        if (l == 0 && r == 2) return block<K, S, D, A, HOIST, NB, false, 0, 2>(p, rows, yrow, c, lanes, ow, w, bias);
    }
  }
  block<K, S, D, A, HOIST, NB, true>(p, rows, yrow, c, lanes, ow, w, bias);
}

// The whole output row of one channel tile: the tile's first HOIST
// kernel rows of weights are loaded once here and stay in registers.
template <int K, int S, int D, Act A, int HOIST, class T, class LanesT>
__attribute__((always_inline)) inline void tile_columns(const DwConvArgs<T>& p, const T* const* rows, T* yrow, int64_t c,
                         LanesT lanes, int64_t ow_lo, int64_t ow_hi) {
  using V = typename LanesT::V;
  V w[HOIST > 0 ? HOIST * K : 1];
  for (int t = 0; t < HOIST * K; ++t) w[t] = lanes.load(p.w + t * p.C + c);
  const V bias = lanes.load(p.b + c);
  for (int64_t ow = 0; ow < p.OW; ow += kBlock) {
    const int64_t n = std::min<int64_t>(kBlock, p.OW - ow);
    auto run = [&](auto nb) {
      constexpr int NB = decltype(nb)::value;
      if (ow >= ow_lo && ow + NB <= ow_hi) return block<K, S, D, A, HOIST, NB, false>(p, rows, yrow, c, lanes, ow, w, bias);
      edge_block<K, S, D, A, HOIST, NB>(p, rows, yrow, c, lanes, ow, w, bias);
    };
    // The last, partial block computes only its n columns: 14-wide rows are 3 blocks + 2
    // columns, 7-wide ones 1 + 3.  Measured against a masked-store 4-column block: 14x14
    // layers -20..-25%, 7x7 -16%, 15-layer sum 558 -> 518 us (1 thread).
    static_assert(kBlock == 4, "partial blocks of 1..3 columns");
    if (n == 4) run(std::integral_constant<int, 4>{});
    else if (n == 3) run(std::integral_constant<int, 3>{});
    else if (n == 2) run(std::integral_constant<int, 2>{});
    else run(std::integral_constant<int, 1>{});
  }
}

// One output row, channels [c_begin, c_end), specialised geometry, tiles outer: a tile's (first
// HOIST rows of) weights are loaded once and stay in registers while the row streams past.
// (A columns-outer order -- every tile of a column block before the next block, XNNPACK's --
// kept the block's input in L1 for the wide 3x3 rows of 72x56 / 64x112, but once the blocks
// were fully unrolled it lost on every layer: sum 590 vs 509 us; L02 62 vs 52, L01 102 vs 105.)
template <int K, int S, int D, Act A, int HOIST, class T>
void row_specialised(const DwConvArgs<T>& p, const T* const* rows, T* yrow, int64_t c_begin,
                     int64_t c_end, int64_t ow_lo, int64_t ow_hi) {
  const int64_t c_full = c_begin + (c_end - c_begin) / Vec::N * Vec::N;
  const int n_tail = int(c_end - c_full);
  for (int64_t c = c_begin; c < c_full; c += Vec::N)
    tile_columns<K, S, D, A, HOIST>(p, rows, yrow, c, Lanes<Vec, false>{Vec::N}, ow_lo, ow_hi);
  if (n_tail > 0)
    with_tail_lanes(n_tail, [&](auto lanes) {
      tile_columns<K, S, D, A, HOIST>(p, rows, yrow, c_full, lanes, ow_lo, ow_hi);
    });
}

// Generic geometry (any odd k <= 7, stride, dilation): column by column, each tap checked
// only in the border columns.
template <Act A, bool TAIL, class T>
void tile_generic(const DwConvArgs<T>& p, const T* const* rows, T* yrow, int64_t c,
                  Lanes<Vec, TAIL> lanes, int64_t ow_lo, int64_t ow_hi) {
  const int k = p.k;
  const int64_t C = p.C, W = p.W, s = p.stride, dil = p.dil, pad = p.pad;
  Vec w[kMaxK * kMaxK];
  for (int t = 0; t < k * k; ++t) w[t] = lanes.load(p.w + t * C + c);
  const Vec bias = lanes.load(p.b + c);
  auto column = [&](int64_t ow, bool checked) {
    // One partial sum per kernel row, added pairwise: for k = 7 this keeps the rounding error
    // at the level of PyTorch's blocked conv (a 49-term serial chain measured ~2x worse).
    Vec row_sum[kMaxK];
    const int64_t iw0 = ow * s - pad;
    for (int kh = 0; kh < k; ++kh) {
      row_sum[kh] = Vec::zero();
      if (!rows[kh]) continue;
      for (int kw = 0; kw < k; ++kw) {
        const int64_t iw = iw0 + kw * dil;
        if (checked && (iw < 0 || iw >= W)) continue;
        row_sum[kh] = fmadd(lanes.load(rows[kh] + iw * C + c), w[kh * k + kw], row_sum[kh]);
      }
    }
    for (int step = 1; step < k; step *= 2)
      for (int kh = 0; kh + step < k; kh += 2 * step) row_sum[kh] = add(row_sum[kh], row_sum[kh + step]);
    lanes.store(yrow + ow * C + c, activate<A>(add(row_sum[0], bias)));
  };
  for (int64_t ow = 0; ow < ow_lo; ++ow) column(ow, true);
  for (int64_t ow = ow_lo; ow < ow_hi; ++ow) column(ow, false);
  for (int64_t ow = std::max(ow_hi, ow_lo); ow < p.OW; ++ow) column(ow, true);
}

template <class T, int K, int S, int D, Act A>
void rows_kernel(const DwConvArgs<T>& p, int64_t row_begin, int64_t row_end, int64_t c_begin,
                 int64_t c_end) {
  const Geometry<K, S, D> g(p);
  const int k = g.k;
  const int64_t s = g.s, pad = p.pad, dil = g.d, span = int64_t(k - 1) * dil;
  // Interior columns [ow_lo, ow_hi): every tap inside the input row.
  const int64_t ow_lo = std::min<int64_t>(p.OW, (pad + s - 1) / s);
  const int64_t last = p.W - 1 + pad - span;  // largest ow*s with the last tap in bounds
  const int64_t ow_hi = last < 0 ? ow_lo : std::max(ow_lo, std::min<int64_t>(p.OW, last / s + 1));
  // Hoisting all k*k weights costs nothing (they fit in registers); hoisting only part of
  // them (5x5) pays only when they are reused over enough column blocks (>= 4): on the 7-wide
  // rows of 960x7x7 / 672x14x14-s2, loading at the point of use measured faster.
  const bool hoist = kHoistRows<K, S, D> == K || p.OW >= 4 * kBlock;
#if defined(MBV3_WITH_AVX512BF16)
  const char* dp_taps = nullptr;
  if constexpr (std::is_same_v<T, bf16> && K > 0 && D == 1) dp_taps = dp_pack<K>(p, c_begin, c_end);
#endif
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t n = r / p.OH, oh = r % p.OH;
    const T* rows[kMaxK];
    for (int kh = 0; kh < k; ++kh) {
      const int64_t ih = oh * s - pad + kh * dil;
      rows[kh] = (ih >= 0 && ih < p.H) ? p.x + (n * p.H + ih) * p.W * p.C : nullptr;
    }
    T* yrow = p.y + r * p.OW * p.C;
    if constexpr (K > 0) {
      int64_t c0 = c_begin;
#if defined(MBV3_WITH_AVX512BF16)
      if constexpr (std::is_same_v<T, bf16> && D == 1) c0 = dp_row<K, S, A>(p, rows, yrow, c_begin, c_end, ow_lo, ow_hi, dp_taps);
#endif
      if (hoist)
        row_specialised<K, S, D, A, kHoistRows<K, S, D>, T>(p, rows, yrow, c0, c_end, ow_lo, ow_hi);
      else
        row_specialised<K, S, D, A, 0, T>(p, rows, yrow, c0, c_end, ow_lo, ow_hi);
    } else {
      int64_t c = c_begin;
      for (; c + Vec::N <= c_end; c += Vec::N)
        tile_generic<A>(p, rows, yrow, c, Lanes<Vec, false>{Vec::N}, ow_lo, ow_hi);
      if (c < c_end) tile_generic<A>(p, rows, yrow, c, Lanes<Vec, true>{int(c_end - c)}, ow_lo, ow_hi);
    }
  }
}

template <class T>
using RowsFn = void (*)(const DwConvArgs<T>&, int64_t, int64_t, int64_t, int64_t);

template <class T, int K, int S, int D>
RowsFn<T> pick_act(Act act) {
  return with_act(act, [](auto a) { return RowsFn<T>(rows_kernel<T, K, S, D, decltype(a)::value>); });
}

// MobileNetV3's depthwise layers are 3x3 / 5x5, stride 1 / 2, dilation 1: fully specialised.
// Every other geometry (dilation 2, stride 3+, k = 1 or 7) takes the generic loop.
template <class T, int K>
RowsFn<T> pick_geometry(const DwConvArgs<T>& p) {
  if (p.dil == 1 && p.stride == 1) return pick_act<T, K, 1, 1>(p.act);
  if (p.dil == 1 && p.stride == 2) return pick_act<T, K, 2, 1>(p.act);
  return pick_act<T, 0, 0, 0>(p.act);
}

template <class T>
void run(const DwConvArgs<T>& p, int64_t row_begin, int64_t row_end, int64_t c_begin, int64_t c_end) {
  // 3x3 and 5x5 are MobileNetV3's; everything else (odd k <= 7) takes the generic loop, and so
  // do non-finite weights: the generic loop skips padded taps, as PyTorch's reference does.
  const bool special = (p.k == 3 || p.k == 5) && p.weights_finite;
  const RowsFn<T> fn = !special ? pick_act<T, 0, 0, 0>(p.act) : p.k == 3 ? pick_geometry<T, 3>(p) : pick_geometry<T, 5>(p);
  fn(p, row_begin, row_end, c_begin, c_end);
}

}  // namespace

void dwconv_bn_act(const DwConvParams& p, int64_t row_begin, int64_t row_end, int64_t c_begin, int64_t c_end) {
  run(p, row_begin, row_end, c_begin, c_end);
}
void dwconv_bn_act(const DwConvParamsBf16& p, int64_t row_begin, int64_t row_end, int64_t c_begin, int64_t c_end) {
  run(p, row_begin, row_end, c_begin, c_end);
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
