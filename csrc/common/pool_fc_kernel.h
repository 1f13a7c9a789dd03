// Building blocks shared by the squeeze-excitation and classifier-head kernels, written once
// against `Vec` (included by each op's <op>_kernel.h, so compiled once per ISA inside that
// ISA's namespace): register blocks over a channel range, pairwise / two-level sums (global
// average pooling of NHWC and NCHW maps) and the small-batch matrix-vector product `matmul`
// of the FC layers.  Channels (or FC outputs) sit in SIMD lanes; a block of up to kBlockVecs
// vectors (+ one masked tail) is held in registers while its loop streams past.  The blocks that
// read x or FC weights are templates over the element type they read (float or bf16, widened on
// load: simd.h); sums, FC inputs and outputs are float32, and the float32 instantiations are the
// float32 kernels' code as it was before bf16.  One exception: on AVX512_BF16 and on NEON with
// FEAT_BF16, bf16 weights read by rows take bf16 dot products (matmul_rows_dp).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "fc_matrix.h"
#include "simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

constexpr int kBlockVecs = 8;
constexpr int kPlaneAcc = 4;

template <int V>
using Int = std::integral_constant<int, V>;

// V full vectors and, when TAIL, one more holding `tail` (< Vec::N) lanes (simd.h's Lanes).
template <int V, bool TAIL>
struct Block {
  static constexpr int K = V + (TAIL ? 1 : 0);
  // T: float or bf16 (widened on load, rounded on store).
  template <class T>
  static inline Vec load(const T* p, int k, int tail) {
    return (TAIL && k == V) ? Lanes<Vec, true>{tail}.load(p + k * Vec::N) : Vec::load(p + k * Vec::N);
  }
  template <class T>
  static inline void store(T* p, int k, int tail, Vec v) {
    if (TAIL && k == V) Lanes<Vec, true>{tail}.store(p + k * Vec::N, v);
    else v.store(p + k * Vec::N);
  }
};

// Splits [begin, end) into register blocks of up to MaxV vectors; body(Block<V, TAIL>{},
// offset, tail).
template <int MaxV = kBlockVecs, class Body>
inline void for_blocks(int64_t begin, int64_t end, Body&& body) {
  static_assert(MaxV >= 1 && MaxV <= 8, "extend the switch below");
  constexpr int64_t B = int64_t(MaxV) * Vec::N;
  int64_t c = begin;
  for (; c + B <= end; c += B) body(Block<MaxV, false>{}, c, 0);
  const int64_t rem = end - c;
  if (rem <= 0) return;
  const int nfull = int(rem / Vec::N), tail = int(rem % Vec::N);  // nfull < MaxV
  auto go = [&](auto v) {
    constexpr int V = decltype(v)::value < MaxV ? decltype(v)::value : MaxV - 1;
    if (tail) body(Block<V, true>{}, c, tail);
    else if constexpr (V > 0) body(Block<V, false>{}, c, 0);
  };
  switch (nfull) {
    case 0: go(Int<0>{}); break;
    case 1: go(Int<1>{}); break;
    case 2: go(Int<2>{}); break;
    case 3: go(Int<3>{}); break;
    case 4: go(Int<4>{}); break;
    case 5: go(Int<5>{}); break;
    case 6: go(Int<6>{}); break;
    default: go(Int<7>{}); break;
  }
}

// load_any / store_any (one vector's first n lanes): simd.h.

// Lane-wise sum of n contiguous elements (T: float or bf16, widened), pairwise: halves (at vector boundaries) down to leaves
// of at most kLeafVecs vectors, each summed by kPlaneAcc accumulators.  Every chain of
// additions stays short (rounding error grows with log n, as in PyTorch's cascade sum).
constexpr int64_t kLeafVecs = 16;
template <class T>
inline Vec sum_leaf(const T* x, int64_t n) {
  static_assert(kPlaneAcc == 4, "four accumulators below");
  Vec a0 = Vec::zero(), a1 = Vec::zero(), a2 = Vec::zero(), a3 = Vec::zero();
  int64_t i = 0;
  for (; i + 4 * Vec::N <= n; i += 4 * Vec::N) {
    a0 = add(a0, Vec::load(x + i));
    a1 = add(a1, Vec::load(x + i + Vec::N));
    a2 = add(a2, Vec::load(x + i + 2 * Vec::N));
    a3 = add(a3, Vec::load(x + i + 3 * Vec::N));
  }
  if (i + Vec::N <= n) a0 = add(a0, Vec::load(x + i)), i += Vec::N;
  if (i + Vec::N <= n) a1 = add(a1, Vec::load(x + i)), i += Vec::N;
  if (i + Vec::N <= n) a2 = add(a2, Vec::load(x + i)), i += Vec::N;
  if (i < n) a3 = add(a3, Vec::load_tail(x + i, int(n - i)));
  return add(add(a0, a1), add(a2, a3));
}
template <class T>
Vec sum_halves(const T* x, int64_t n) {
  if (n <= kLeafVecs * Vec::N) return sum_leaf(x, n);
  const int64_t half = (n / Vec::N) / 2 * Vec::N;
  return add(sum_halves(x, half), sum_halves(x + half, n - half));
}
// Small planes (up to 14x14 on AVX-512) stay inline: one leaf.
template <class T>
inline Vec sum_lanes(const T* x, int64_t n) {
  return n <= kLeafVecs * Vec::N ? sum_leaf(x, n) : sum_halves(x, n);
}

constexpr int64_t kRun = 64;  // FC steps summed from zero before joining the total

// Lane-wise partial sums of the dot product w . x over n elements: four accumulators (FMA
// latency), runs of kRun vectors summed from zero before joining the total.  TW, TX: float or
// bf16 (widened on load; the SE and head weights may be bf16, their inputs are float32).
template <class TW, class TX>
inline Vec dot_lanes(const TW* w, const TX* x, int64_t n) {
  Vec total = Vec::zero();
  int64_t i = 0;
  while (i < n) {
    const int64_t i1 = std::min(n, i + kRun * Vec::N);
    Vec a0 = Vec::zero(), a1 = Vec::zero(), a2 = Vec::zero(), a3 = Vec::zero();
    for (; i + 4 * Vec::N <= i1; i += 4 * Vec::N) {
      a0 = fmadd(Vec::load(w + i), Vec::load(x + i), a0);
      a1 = fmadd(Vec::load(w + i + Vec::N), Vec::load(x + i + Vec::N), a1);
      a2 = fmadd(Vec::load(w + i + 2 * Vec::N), Vec::load(x + i + 2 * Vec::N), a2);
      a3 = fmadd(Vec::load(w + i + 3 * Vec::N), Vec::load(x + i + 3 * Vec::N), a3);
    }
    if (i + Vec::N <= i1) a0 = fmadd(Vec::load(w + i), Vec::load(x + i), a0), i += Vec::N;
    if (i + Vec::N <= i1) a1 = fmadd(Vec::load(w + i), Vec::load(x + i), a1), i += Vec::N;
    if (i + Vec::N <= i1) a2 = fmadd(Vec::load(w + i), Vec::load(x + i), a2), i += Vec::N;
    if (i < i1) a3 = fmadd(Vec::load_tail(w + i, int(i1 - i)), Vec::load_tail(x + i, int(i1 - i)), a3), i = i1;
    total = add(total, add(add(a0, a1), add(a2, a3)));
  }
  return total;
}

// Software prefetch for the rows [o_begin, o_end) of an [out, in] weight read in order: with
// row o, the first line of every 4 KB page that starts in the row kFcPageAhead bytes further on
// (never past row o_end - 1).  The hardware prefetcher streams within a page but stops at its
// end and the page's translation is a TLB miss after a forward: one early touch per page
// starts both (a whole-row prefetch, as in the int8 FC, measured slower here).
constexpr uintptr_t kFcPageAhead = 131072;
constexpr uintptr_t kFcPage = 4096;
struct FcPageAhead {
  uintptr_t next, row_bytes, ahead, end;  // next: the next page start to touch
  template <class TW>
  FcPageAhead(const TW* w, int64_t ld, int64_t nin, int64_t o_begin, int64_t o_end)
      : row_bytes(uintptr_t(ld) * sizeof(TW)),
        ahead(reinterpret_cast<uintptr_t>(w) + kFcPageAhead),
        end(o_end > o_begin ? reinterpret_cast<uintptr_t>(w) + uintptr_t((o_end - 1) * ld + nin) * sizeof(TW) : 0) {
    next = (ahead + uintptr_t(o_begin) * row_bytes + kFcPage - 1) & ~(kFcPage - 1);
  }
  // Touches the pages that start before the end of row o + kFcPageAhead bytes.
  inline void row(int64_t o) {
    const uintptr_t to = std::min(end, ahead + uintptr_t(o + 1) * row_bytes);
    for (; next < to; next += kFcPage) __builtin_prefetch(reinterpret_cast<const void*>(next), 0, 3);
  }
};

// bf16 dot products, where the unit has them (cpu_isa.h's fc_dot_products): AVX512_BF16's
// vdpbf16ps (32 bf16 per step) and FEAT_BF16's BFDOT (8 per step).  Each float32 lane sums a
// pair's two products; DpVec holds one step of bf16 pairs.
#if defined(MBV3_ISA_AVX512) && defined(MBV3_WITH_AVX512BF16)
#define MBV3_FC_DOT_PRODUCTS 1
constexpr int64_t kDpStep = 32;
using DpVec = __m512i;
static inline DpVec dp_load(const bf16* p) { return _mm512_loadu_si512(p); }
static inline DpVec dp_load_tail(const bf16* p, int64_t n) {  // n in [1, kDpStep)
  return _mm512_maskz_loadu_epi16(__mmask32((uint64_t(1) << n) - 1), p);
}
static inline Vec dp_step(Vec acc, DpVec a, DpVec b) {
  return {_mm512_dpbf16_ps(acc.v, reinterpret_cast<__m512bh&>(a), reinterpret_cast<__m512bh&>(b))};
}
#elif defined(MBV3_ISA_NEON) && defined(MBV3_WITH_NEON_BF16)
#define MBV3_FC_DOT_PRODUCTS 1
constexpr int64_t kDpStep = 8;
using DpVec = bfloat16x8_t;
static inline DpVec dp_load(const bf16* p) { return vreinterpretq_bf16_u16(vld1q_u16(reinterpret_cast<const uint16_t*>(p))); }
static inline DpVec dp_load_tail(const bf16* p, int64_t n) {  // no masked loads: a zeroed copy
  uint16_t b[kDpStep] = {};
  std::memcpy(b, p, sizeof(bf16) * size_t(n));
  return vreinterpretq_bf16_u16(vld1q_u16(b));
}
static inline Vec dp_step(Vec acc, DpVec a, DpVec b) { return {vbfdotq_f32(acc.v, a, b)}; }
#endif

#if defined(MBV3_FC_DOT_PRODUCTS)
// bf16 weights read by rows with dot products (above).  The float32 inputs are rounded to bf16
// first, as a bf16 Linear reads its bf16 input.  Rows in order, two at a time (one at NB = 1:
// two interleaved rows streamed cold weights 1.5x slower on Zen 4), for groups of up to 4
// samples; with more samples the second group reads the two rows again from L1.  Every output
// takes the same order whatever NB, so a sample's result does not depend on the batch around it:
// kDpChains accumulators taking alternate steps (the dot product's latency), runs of kRun steps
// summed from zero, each run's horizontal sum added to a float total.  Both instructions flush
// denormals and round their pair sum once, so these sums are held to the tolerance rule, not to
// the float32 kernel's bits.
constexpr int kDpChains = 2;  // accumulators per output
template <int NB>
inline void matmul_rows_dp(const FcMatrixT<bf16>& m, const float* in, int64_t in_ld, int64_t nin, int64_t o_begin,
                           int64_t o_end, float* out, int64_t out_ld) {
  static_assert(NB >= 1 && NB <= 8, "two groups of up to 4 samples");
  const int64_t npad = (nin + kDpStep - 1) / kDpStep * kDpStep;
  thread_local std::vector<bf16> xb_buf;  // the inputs in bf16, zero-padded to whole steps
  if (int64_t(xb_buf.size()) < NB * npad) xb_buf.resize(size_t(NB * npad));
  bf16* const xb = xb_buf.data();
  for (int j = 0; j < NB; ++j)
    for (int64_t i = 0; i < npad; i += Vec::N) {
      const int64_t n = nin - i;
      (n > 0 ? load_any(in + j * in_ld + i, n) : Vec::zero()).store(xb + j * npad + i);
    }
  FcPageAhead pf(m.w, m.ld, nin, o_begin, o_end);
  // Rows [o, o + RR) x samples [j0, j0 + G).
  auto rows = [&](auto r_c, auto g_c, int64_t o, int j0) {
    constexpr int RR = decltype(r_c)::value, G = decltype(g_c)::value;
    const bf16* w[RR];
    for (int r = 0; r < RR; ++r) w[r] = m.w + (o + r) * m.ld;
    const bf16* x0 = xb + j0 * npad;
    Vec run[RR][G][kDpChains];
    float tot[RR][4] = {};
    auto clear = [&] {
#pragma GCC unroll 16
      for (int r = 0; r < RR; ++r)
#pragma GCC unroll 16
        for (int j = 0; j < G; ++j)
#pragma GCC unroll 4
          for (int a = 0; a < kDpChains; ++a) run[r][j][a] = Vec::zero();
    };
    clear();
    auto step = [&](int64_t i, auto a_c, auto tail_c) {  // tail_c: the last, partial step
      constexpr int a = decltype(a_c)::value;
      DpVec x[G];
#pragma GCC unroll 16
      for (int j = 0; j < G; ++j) x[j] = dp_load(x0 + j * npad + i);
#pragma GCC unroll 16
      for (int r = 0; r < RR; ++r) {
        const DpVec wr = decltype(tail_c)::value ? dp_load_tail(w[r] + i, nin - i) : dp_load(w[r] + i);
#pragma GCC unroll 16
        for (int j = 0; j < G; ++j) run[r][j][a] = dp_step(run[r][j][a], wr, x[j]);
      }
    };
    auto flush = [&] {
      for (int r = 0; r < RR; ++r) {
        Vec v[4];
#pragma GCC unroll 4
        for (int j = 0; j < G; ++j) {
          v[j] = run[r][j][0];
#pragma GCC unroll 4
          for (int a = 1; a < kDpChains; ++a) v[j] = add(v[j], run[r][j][a]);
        }
        // reduce_add4 for every G (zeros in the unused slots): each lane set is summed by the
        // same tree whatever G, which a single-vector reduction's other tree would not give.
#pragma GCC unroll 4
        for (int j = G; j < 4; ++j) v[j] = Vec::zero();
        float h[4];
        reduce_add4(v[0], v[1], v[2], v[3], h);
        for (int j = 0; j < G; ++j) tot[r][j] += h[j];
      }
      clear();
    };
    static_assert(kDpChains == 2, "steps in pairs below, at most one left over");
    int64_t i = 0;
    while (i + kDpStep <= nin) {
      const int64_t i1 = std::min(nin - kDpStep + 1, i + kRun * kDpStep);
      for (; i + kDpStep < i1; i += 2 * kDpStep) {
        step(i, Int<0>{}, std::false_type{});
        step(i + kDpStep, Int<1>{}, std::false_type{});
      }
      if (i < i1) step(i, Int<0>{}, std::false_type{}), i += kDpStep;
      flush();
    }
    if (i < nin) {
      step(i, Int<0>{}, std::true_type{});
      flush();
    }
    for (int r = 0; r < RR; ++r)
      for (int j = 0; j < G; ++j) out[(j0 + j) * out_ld + o + r] = tot[r][j];
  };
  auto block = [&](auto r_c, int64_t o) {
    pf.row(o + decltype(r_c)::value - 1);
    rows(r_c, Int<(NB < 4 ? NB : 4)>{}, o, 0);
    if constexpr (NB > 4) rows(r_c, Int<NB - 4>{}, o, 4);
  };
  constexpr int R = NB == 1 ? 1 : 2;
  int64_t o = o_begin;
  for (; o + R <= o_end; o += R) block(Int<R>{}, o);
  if (o < o_end) block(Int<1>{}, o);
}
#endif

// For NB samples j at once (each weight loaded once for all of them):
//   out[j * out_ld + o] = sum_i W(o, i) in[j * in_ld + i],  o in [o_begin, o_end)
// (no bias, no activation).  TW: the weights' element type (float or bf16, widened on load).
template <int NB, class TW>
inline void matmul(const FcMatrixT<TW>& m, const float* in, int64_t in_ld, int64_t nin, int64_t o_begin,
                   int64_t o_end, float* out, int64_t out_ld) {
  if (m.panel > 0) {
    // Panel by panel, blocks of up to kBlockVecs vectors whatever NB: a run of kRun panel rows
    // (16 KB for 64 outputs) is read from memory for the first sample and from L1 for the
    // others.  (NB samples in registers at once would take narrower blocks, each a strided pass
    // over the whole panel: 1.1-1.6x slower at batch 4 and 8.)  Each output is summed as in the
    // by_output walk below (runs of kRun steps from zero, then added up), so the bits are its.
    for (int64_t o = o_begin; o < o_end;) {
      const int64_t p0 = o / m.panel * m.panel, o1 = std::min(o_end, p0 + m.panel);
      const TW* panel = m.w + p0 * nin - p0;  // element (o, i) at panel[i * m.panel + o]
      for_blocks(o, o1, [&](auto blk, int64_t o0, int tail) {
        using B = decltype(blk);
        Vec acc[NB][B::K];
        for (int j = 0; j < NB; ++j)
#pragma GCC unroll 16
          for (int k = 0; k < B::K; ++k) acc[j][k] = Vec::zero();
        for (int64_t i0 = 0; i0 < nin; i0 += kRun) {
          const int64_t i1 = std::min(nin, i0 + kRun);
          for (int j = 0; j < NB; ++j) {
            Vec run[B::K];
#pragma GCC unroll 16
            for (int k = 0; k < B::K; ++k) run[k] = Vec::zero();
            const TW* w = panel + i0 * m.panel + o0;
            const float* x = in + j * in_ld;
            for (int64_t i = i0; i < i1; ++i, w += m.panel) {
              const Vec xi = Vec::set1(x[i]);
#pragma GCC unroll 16
              for (int k = 0; k < B::K; ++k) run[k] = fmadd(B::load(w, k, tail), xi, run[k]);
            }
#pragma GCC unroll 16
            for (int k = 0; k < B::K; ++k) acc[j][k] = add(acc[j][k], run[k]);
          }
        }
        for (int j = 0; j < NB; ++j)
#pragma GCC unroll 16
          for (int k = 0; k < B::K; ++k) B::store(out + j * out_ld + o0, k, tail, acc[j][k]);
      });
      o = o1;
    }
    return;
  }
  if (m.by_output) {
    // Block of outputs x NB samples of accumulators: 8, 4, 2, 2 vectors wide for NB = 1..4.
    constexpr int MaxV = NB == 1 ? 8 : NB == 2 ? 4 : 2;
    for_blocks<MaxV>(o_begin, o_end, [&](auto blk, int64_t o0, int tail) {
      using B = decltype(blk);
      Vec acc[NB][B::K];
#pragma GCC unroll 16
      for (int j = 0; j < NB; ++j)
#pragma GCC unroll 16
        for (int k = 0; k < B::K; ++k) acc[j][k] = Vec::zero();
      const TW* w = m.w + o0;
      for (int64_t i0 = 0; i0 < nin; i0 += kRun) {  // two levels, as in the pool
        Vec run[NB][B::K];
#pragma GCC unroll 16
        for (int j = 0; j < NB; ++j)
#pragma GCC unroll 16
          for (int k = 0; k < B::K; ++k) run[j][k] = Vec::zero();
        for (int64_t i = i0, i1 = std::min(nin, i0 + kRun); i < i1; ++i, w += m.ld) {
          Vec wv[B::K];
#pragma GCC unroll 16
          for (int k = 0; k < B::K; ++k) wv[k] = B::load(w, k, tail);
#pragma GCC unroll 16
          for (int j = 0; j < NB; ++j) {
            const Vec xj = Vec::set1(in[j * in_ld + i]);
#pragma GCC unroll 16
            for (int k = 0; k < B::K; ++k) run[j][k] = fmadd(wv[k], xj, run[j][k]);
          }
        }
#pragma GCC unroll 16
        for (int j = 0; j < NB; ++j)
#pragma GCC unroll 16
          for (int k = 0; k < B::K; ++k) acc[j][k] = add(acc[j][k], run[j][k]);
      }
#pragma GCC unroll 16
      for (int j = 0; j < NB; ++j)
#pragma GCC unroll 16
        for (int k = 0; k < B::K; ++k) B::store(out + j * out_ld + o0, k, tail, acc[j][k]);
    });
    return;
  }
#if defined(MBV3_FC_DOT_PRODUCTS)
  if constexpr (std::is_same_v<TW, bf16>) return matmul_rows_dp<NB>(m, in, in_ld, nin, o_begin, o_end, out, out_ld);
#endif
  // Rows are read in order; FcPageAhead touches the pages further on (at batch 1 these weights
  // are cold).
  FcPageAhead pf(m.w, m.ld, nin, o_begin, o_end);
  if constexpr (NB == 1) {
    // One row at a time, so the weights stream from memory in order (4 interleaved rows
    // measured slower: README, "Design notes").
    for (int64_t o = o_begin; o < o_end; ++o) {
      pf.row(o);
      out[o] = reduce_add(dot_lanes(m.w + o * m.ld, in, nin));
    }
    return;
  }
  // Dot products: 2 rows x NB samples of accumulators (each weight loaded once for the NB
  // samples), the horizontal sums four at a time.
  constexpr int R = 2;
  auto rows = [&](auto r_c, int64_t o) {
    constexpr int RR = decltype(r_c)::value;
    const TW* w[RR];
    for (int r = 0; r < RR; ++r) w[r] = m.w + (o + r) * m.ld;
    pf.row(o + RR - 1);
    Vec acc[RR][NB];
#pragma GCC unroll 16
    for (int r = 0; r < RR; ++r)
#pragma GCC unroll 16
      for (int j = 0; j < NB; ++j) acc[r][j] = Vec::zero();
    Vec run[RR][NB];
#pragma GCC unroll 16
    for (int r = 0; r < RR; ++r)
#pragma GCC unroll 16
      for (int j = 0; j < NB; ++j) run[r][j] = Vec::zero();
    auto step = [&](int64_t i, auto ld) {
      Vec x[NB];
#pragma GCC unroll 16
      for (int j = 0; j < NB; ++j) x[j] = ld(in + j * in_ld + i);
#pragma GCC unroll 16
      for (int r = 0; r < RR; ++r) {
        const Vec wr = ld(w[r] + i);
#pragma GCC unroll 16
        for (int j = 0; j < NB; ++j) run[r][j] = fmadd(wr, x[j], run[r][j]);
      }
    };
    auto flush = [&] {
#pragma GCC unroll 16
      for (int r = 0; r < RR; ++r)
#pragma GCC unroll 16
        for (int j = 0; j < NB; ++j) acc[r][j] = add(acc[r][j], run[r][j]), run[r][j] = Vec::zero();
    };
    // Two levels, as in the pool: runs of kRun vectors summed from zero, then added up.
    int64_t i = 0;
    while (i + Vec::N <= nin) {
      for (int64_t i1 = std::min(nin - Vec::N + 1, i + kRun * Vec::N); i < i1; i += Vec::N)
        step(i, [](const auto* q) { return Vec::load(q); });
      flush();
    }
    if (i < nin) {
      const int t = int(nin - i);
      step(i, [t](const auto* q) { return Vec::load_tail(q, t); });
      flush();
    }
    float sums[RR][NB > 4 ? NB : 4];
    if constexpr (NB == 4) {
      for (int r = 0; r < RR; ++r) reduce_add4(acc[r][0], acc[r][1], acc[r][2], acc[r][3], sums[r]);
    } else {
      for (int r = 0; r < RR; ++r)
        for (int j = 0; j < NB; ++j) sums[r][j] = reduce_add(acc[r][j]);
    }
    for (int r = 0; r < RR; ++r)
      for (int j = 0; j < NB; ++j) out[j * out_ld + o + r] = sums[r][j];
  };
  int64_t o = o_begin;
  for (; o + R <= o_end; o += R) rows(Int<R>{}, o);
  for (; o < o_end; ++o) rows(Int<1>{}, o);
}

// v[o] = act(v[o] + bias[o]) over [begin, end).
template <class Act>
inline void bias_act(float* v, const float* bias, int64_t begin, int64_t end, Act act) {
  for (int64_t o = begin; o < end; o += Vec::N) {
    const int64_t n = end - o;
    store_any(v + o, n, act(add(load_any(v + o, n), load_any(bias + o, n))));
  }
}

// One FC layer for nb (1..kFcMaxSamples) samples, the SE's and the head's:
//   out[j * out_ld + o] = act(sum_i W(o, i) in[j * in_ld + i] + bias[o]),  o in [o_begin, o_end)
// Each weight comes from memory once for up to 8 samples where bf16 rows take dot products
// (matmul_rows_dp: two groups of 4, the second reading the rows from L1), and once per block of
// up to 4 samples elsewhere.  Every output is one sample's own sum, so the blocking never
// changes a result.
constexpr int64_t kFcMaxSamples = 8;
template <class TW, class ActF>
inline void fc_layer(const FcMatrixT<TW>& m, const float* bias, int64_t nb, const float* in, int64_t in_ld,
                     int64_t nin, int64_t o_begin, int64_t o_end, float* out, int64_t out_ld, ActF act) {
  auto finish = [&](int64_t n) {
    for (int64_t j = 0; j < n; ++j) bias_act(out + j * out_ld, bias, o_begin, o_end, act);
  };
  if (nb > 4) {
#if defined(MBV3_FC_DOT_PRODUCTS)
    if constexpr (std::is_same_v<TW, bf16>) {
      if (!m.by_output && m.panel == 0) {
        auto dp = [&](auto nb_c) {
          matmul_rows_dp<decltype(nb_c)::value>(m, in, in_ld, nin, o_begin, o_end, out, out_ld);
          finish(nb);
        };
        switch (nb) {
          case 5: return dp(Int<5>{});
          case 6: return dp(Int<6>{});
          case 7: return dp(Int<7>{});
          default: return dp(Int<8>{});
        }
      }
    }
#endif
    fc_layer(m, bias, 4, in, in_ld, nin, o_begin, o_end, out, out_ld, act);
    return fc_layer(m, bias, nb - 4, in + 4 * in_ld, in_ld, nin, o_begin, o_end, out + 4 * out_ld, out_ld, act);
  }
  auto run = [&](auto nb_c) {
    matmul<decltype(nb_c)::value>(m, in, in_ld, nin, o_begin, o_end, out, out_ld);
    finish(nb);
  };
  switch (nb) {
    case 1: return run(Int<1>{});
    case 2: return run(Int<2>{});
    case 3: return run(Int<3>{});
    default: return run(Int<4>{});
  }
}

// Sums of 4 consecutive planes of n elements each (T: float or bf16, widened), the four horizontal sums done together.
// Small planes (7x7 = 3 vectors + 1 is MobileNetV3's common case) take one accumulator each:
// four independent chains, none longer than kLeafVecs.
template <class T>
inline void sum_planes4(const T* x, int64_t n, float* out) {
  if (n > kLeafVecs * Vec::N) {
    reduce_add4(sum_halves(x, n), sum_halves(x + n, n), sum_halves(x + 2 * n, n),
                sum_halves(x + 3 * n, n), out);
    return;
  }
  Vec a0 = Vec::zero(), a1 = Vec::zero(), a2 = Vec::zero(), a3 = Vec::zero();
  const T *x1 = x + n, *x2 = x1 + n, *x3 = x2 + n;
  int64_t i = 0;
  for (; i + Vec::N <= n; i += Vec::N) {
    a0 = add(a0, Vec::load(x + i));
    a1 = add(a1, Vec::load(x1 + i));
    a2 = add(a2, Vec::load(x2 + i));
    a3 = add(a3, Vec::load(x3 + i));
  }
  if (i < n) {
    const int t = int(n - i);
    a0 = add(a0, Vec::load_tail(x + i, t));
    a1 = add(a1, Vec::load_tail(x1 + i, t));
    a2 = add(a2, Vec::load_tail(x2 + i, t));
    a3 = add(a3, Vec::load_tail(x3 + i, t));
  }
  reduce_add4(a0, a1, a2, a3, out);
}

// NHWC: the pixels [hw0, hw1) of sample row base `x` (already offset to pixel hw0), all
// channels, summed per channel into float32 `sum` (T: float or bf16, widened).
template <class T>
inline void pool_nhwc_chunk(const T* x, int64_t C, int64_t npix, float* sum) {
  for_blocks(0, C, [&](auto blk, int64_t c0, int tail) {
    using B = decltype(blk);
    // Two levels: runs of kSubPixels pixels are summed from zero, then added to the total, so
    // no chain of additions exceeds ~kSubPixels + npix / kSubPixels.  Narrow blocks use two
    // sets of run accumulators (even / odd pixels) to keep enough adds in flight.
    constexpr int A = B::K <= 4 ? 2 : 1;
    constexpr int64_t kSubPixels = 16;
    Vec acc[B::K];
#pragma GCC unroll 16
    for (int k = 0; k < B::K; ++k) acc[k] = Vec::zero();
    const T* px = x + c0;
    for (int64_t i0 = 0; i0 < npix; i0 += kSubPixels) {
      const int64_t m = std::min(kSubPixels, npix - i0);
      Vec run[A][B::K];
#pragma GCC unroll 16
      for (int a = 0; a < A; ++a)
#pragma GCC unroll 16
        for (int k = 0; k < B::K; ++k) run[a][k] = Vec::zero();
      int64_t i = 0;
      for (; i + A <= m; i += A) {
#pragma GCC unroll 16
        for (int a = 0; a < A; ++a, px += C)
#pragma GCC unroll 16
          for (int k = 0; k < B::K; ++k) run[a][k] = add(run[a][k], B::load(px, k, tail));
      }
      if (i < m) {  // A == 2, one odd pixel left
#pragma GCC unroll 16
        for (int k = 0; k < B::K; ++k) run[0][k] = add(run[0][k], B::load(px, k, tail));
        px += C;
      }
#pragma GCC unroll 16
      for (int k = 0; k < B::K; ++k) {
        Vec v = run[0][k];
        if constexpr (A == 2) v = add(v, run[1][k]);
        acc[k] = add(acc[k], v);
      }
    }
#pragma GCC unroll 16
    for (int k = 0; k < B::K; ++k) B::store(sum + c0, k, tail, acc[k]);
  });
}

}  // namespace
}  // namespace MBV3_ISA_NS
}  // namespace mbv3
