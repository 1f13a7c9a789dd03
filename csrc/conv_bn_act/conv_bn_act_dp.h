// The avx512_bf16 dense conv for bf16 x / w / y on bf16 dot products (vdpbf16ps): included by
// conv_bn_act_kernel.h in the avx512_bf16 bf16 unit only, for every shape whose input window
// fits 8 MB (covers(); the others, strides far above k, run the widening kernel).
//
// The conv is a GEMM over the K = Cin*k*k taps taken in pairs, as the 1x1 K-pair kernel
// (pwconv_bn_act_k_pairs_kernel.h): per output pixel and 16 output channels, one vdpbf16ps per
// tap pair, acc += x[t]*w[t] + x[u]*w[u], 16 fp32 lanes.
//  - Input: per band of kBandRows output rows, the input rows the band reads are copied (bf16,
//    exact) into a zero-bordered planar window [Cin][rows][cols]: padding is zeros there, so
//    nothing below tests bounds, and a padded tap adds 0 * w.
//  - Pairs (their order and the weight packing: conv_bn_act_pairs.h, shared with the BFDOT
//    kernel): at stride 2, taps kw and kw + 1 (kw even) of one (ci, kh) are the two halves of one
//    aligned 32-bit word of the window for every output pixel (column 2*ow + kw): the tile
//    broadcasts them from the window itself.  The other taps (the odd kw = k - 1 at stride 2;
//    all at other strides) are paired in (ci, kh, kw) order and, per output row, chunks of
//    kChunk pixels get their pair rows A[pair][pixel] = (x[t], x[u]) built, 16 pixels per
//    vpermt2w (stride 1 and 2) or per pixel (stride 3+).  An odd count's last pair has a zero
//    high half, never a neighbour's value (a NaN there would reach the sum as NaN * 0).
//  - Weights: packed per call in the same pair order, [channel group of 16][pair][lane][2],
//    zero in the lanes past Cout and in the missing tap of a last odd pair.
//  - Register tile: 16 pixels x 16 channels (16 accumulators, one weight vector, the pair as an
//    embedded {1to16} broadcast), started at the bias; K never blocked, so a result does not
//    depend on the tiling or the thread split.  Pixels past OW are computed on zeros (or on the
//    window's slack) and not stored.
// Numerics: vdpbf16ps flushes denormal inputs and outputs and rounds its pair sums itself; the
// store rounds with vcvtneps2bf16 (Vec::store).  Held to the tolerance rule, not to bit
// equality with float32 (README, bfloat16).  NaN / inf in x reach exactly the outputs whose
// taps read them.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "conv_bn_act.h"
#include "conv_bn_act_pairs.h"
#include "common/simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {
namespace dp {

constexpr int P = 16;  // pixels per register tile

// The window's rows and (even) columns: column c holds input column c - pad.  The gathers'
// last reads: 32-word loads from column (OWp - P) * s + kw (stride 1, 2), column
// (OWp - 1) * s + kw (stride 3+), word OWp - 1 + kw / 2 of a row (direct pairs).
inline void window_size(const ConvArgs<bf16>& p, int64_t OWp, int64_t& R, int64_t& Wp) {
  const int64_t k = p.k, s = p.stride;
  R = (kBandRows - 1) * s + k;
  Wp = std::max({(OWp - P) * s + k + 32, (OWp - 1) * s + k, p.pad + p.W, 2 * OWp + k});
  Wp += Wp & 1;
}

// The shapes this kernel takes: all whose window fits kMaxWindow bytes (a stride far above k,
// e.g. 65536 on a tiny map, would make it mostly unread rows and columns); the others run the
// widening kernel.
constexpr int64_t kMaxWindow = int64_t(8) << 20;
inline bool covers(const ConvArgs<bf16>& p) {
  int64_t R, Wp;
  const int64_t OWp = (p.OW + P - 1) / P * P;
  if (p.stride > kMaxWindow || p.OW > kMaxWindow) return false;  // keeps R and Wp in range
  window_size(p, OWp, R, Wp);
  return double(p.Cin) * double(R) * double(Wp) * double(sizeof(bf16)) <= double(kMaxWindow);
}

// The plan for tiles of P pixels.
inline Plan plan(const ConvArgs<bf16>& p) {
  const int64_t OWp = (p.OW + P - 1) / P * P;
  int64_t R, Wp;
  window_size(p, OWp, R, Wp);
  return plan_for(p, OWp, R, Wp);
}

inline __mmask32 first(int64_t n) { return n >= 32 ? ~__mmask32(0) : __mmask32((1u << n) - 1u); }

// Dense channels-last pixels of 3 channels (the stem's input): W pixels at src into three
// planes, 32 pixels (96 words) per step; plane c's word j is word 3j + c, taken from the first
// two vectors by vpermt2w, then from the third by a masked vpermw.
struct Deinterleave3 {
  alignas(64) uint16_t lo[3][32];  // vpermt2w indices into the first two vectors
  alignas(64) uint16_t hi[3][32];  // vpermw indices into the third
  uint32_t from_hi[3];             // the words taken from the third
};
constexpr Deinterleave3 make_deinterleave3() {
  Deinterleave3 t{};
  for (int c = 0; c < 3; ++c)
    for (int j = 0; j < 32; ++j) {
      const int i = 3 * j + c;
      t.lo[c][j] = uint16_t(i < 64 ? i : 0);
      t.hi[c][j] = uint16_t(i < 64 ? 0 : i - 64);
      if (i >= 64) t.from_hi[c] |= 1u << j;
    }
  return t;
}
inline constexpr Deinterleave3 kDeinterleave3 = make_deinterleave3();

inline void deinterleave3(const bf16* src, int64_t W, bf16* const* dst) {
  const Deinterleave3& t = kDeinterleave3;
  for (int64_t i = 0; i < W; i += 32) {
    const int64_t n = std::min<int64_t>(32, W - i), words = 3 * n;
    const bf16* s = src + 3 * i;
    const __m512i a = _mm512_maskz_loadu_epi16(first(words), s);
    const __m512i b = _mm512_maskz_loadu_epi16(first(std::max<int64_t>(0, words - 32)), s + 32);
    const __m512i c = _mm512_maskz_loadu_epi16(first(std::max<int64_t>(0, words - 64)), s + 64);
    for (int ch = 0; ch < 3; ++ch) {
      __m512i v = _mm512_permutex2var_epi16(a, _mm512_load_si512(t.lo[ch]), b);
      v = _mm512_mask_permutexvar_epi16(v, __mmask32(t.from_hi[ch]), _mm512_load_si512(t.hi[ch]), c);
      _mm512_mask_storeu_epi16(dst[ch] + i, first(n), v);
    }
  }
}

// Input rows [ih_org, ih_org + R) of sample n into win ([Cin][R][Wp], zero outside x).
inline void fill_window(const ConvArgs<bf16>& p, const Plan& g, int64_t n, int64_t ih_org, bf16* win) {
  const int64_t W = p.W, pad = p.pad, Cin = p.Cin;
  const bool cl3 = Cin == 3 && p.sx_c == 1 && p.sx_w == 3;
  for (int64_t r = 0; r < g.R; ++r) {
    const int64_t ih = ih_org + r;
    const bool inside = ih >= 0 && ih < p.H;
    for (int64_t ci = 0; ci < Cin; ++ci) {
      bf16* dst = win + (ci * g.R + r) * g.Wp;
      if (!inside) {
        std::memset(dst, 0, sizeof(bf16) * g.Wp);
        continue;
      }
      std::memset(dst, 0, sizeof(bf16) * pad);
      std::memset(dst + pad + W, 0, sizeof(bf16) * (g.Wp - pad - W));
      if (cl3) continue;
      const bf16* src = p.x + n * p.sx_n + ci * p.sx_c + ih * p.sx_h;
      if (p.sx_w == 1) std::memcpy(dst + pad, src, sizeof(bf16) * W);
      else for (int64_t i = 0; i < W; ++i) dst[pad + i] = src[i * p.sx_w];
    }
    if (cl3 && inside) {
      bf16* planes[3];
      for (int ci = 0; ci < 3; ++ci) planes[ci] = win + (ci * g.R + r) * g.Wp + pad;
      deinterleave3(p.x + n * p.sx_n + ih * p.sx_h, W, planes);
    }
  }
}

// The built pairs of pixels [ow0, ow0 + np) (np a multiple of P) of output row oh into
// A[n_built][kChunk]; row: the window at oh's first tap row.
template <int S>
void build_pairs(const ConvArgs<bf16>& p, const Plan& g, const bf16* row, int64_t ow0, int64_t np, uint32_t* A) {
  const int64_t s = p.stride;
  [[maybe_unused]] const __m512i idx = [] {
    alignas(64) uint16_t v[32];
    for (int j = 0; j < 16; ++j) {  // word 2j: tap a at pixel j; word 2j + 1: tap b
      v[2 * j] = uint16_t(j * (S == 0 ? 1 : S));
      v[2 * j + 1] = uint16_t(32 + j * (S == 0 ? 1 : S));
    }
    return _mm512_load_si512(v);
  }();
  for (int64_t m = 0; m < g.n_built; ++m) {
    const Pair& pr = g.pairs[g.KP - g.n_built + m];
    const bf16* a = row + g.off[pr.a];
    const bf16* b = pr.b >= 0 ? row + g.off[pr.b] : nullptr;
    uint32_t* out = A + m * kChunk;
    for (int64_t j = 0; j < np; j += P) {
      const int64_t col = (ow0 + j) * (S == 0 ? s : S);
      if constexpr (S != 0) {
        const __m512i va = _mm512_loadu_si512(a + col);
        const __m512i vb = b ? _mm512_loadu_si512(b + col) : _mm512_setzero_si512();
        _mm512_storeu_si512(out + j, _mm512_permutex2var_epi16(va, idx, vb));
      } else {
        for (int64_t i = 0; i < P; ++i)
          out[j + i] = uint32_t(a[col + i * s].bits) | (b ? uint32_t(b[col + i * s].bits) << 16 : 0u);
      }
    }
  }
}

// 16 accumulators += w . the pairs a[0..15], each broadcast as an embedded {1to16} operand, in
// two asm blocks of 8 (an asm takes at most 30 operands, a "+v" counts twice), so that the
// addresses are base + constant.  The unused "m" operand tells the compiler that the asm reads
// a[0..15]: the pair rows are written just before (build_pairs) and read only here, so without
// it their stores would look dead.
#define MBV3_DP(j, o) "vdpbf16ps " #o "(%[a])%{1to16%}, %[w], %[c" #j "]\n\t"
#define MBV3_ACC(j, i) [c##j] "+v"(acc[i])
#define MBV3_DOT8(h, o0, o1, o2, o3, o4, o5, o6, o7)                                                         \
  asm(MBV3_DP(0, o0) MBV3_DP(1, o1) MBV3_DP(2, o2) MBV3_DP(3, o3) MBV3_DP(4, o4) MBV3_DP(5, o5) MBV3_DP(6, o6) \
          MBV3_DP(7, o7)                                                                                       \
      : MBV3_ACC(0, h + 0), MBV3_ACC(1, h + 1), MBV3_ACC(2, h + 2), MBV3_ACC(3, h + 3), MBV3_ACC(4, h + 4),    \
        MBV3_ACC(5, h + 5), MBV3_ACC(6, h + 6), MBV3_ACC(7, h + 7)                                             \
      : [a] "r"(a), [w] "v"(w), [m] "m"(*reinterpret_cast<const uint32_t(*)[P]>(a)))
inline void dot16(__m512 (&acc)[P], __m512i w, const uint32_t* a) {
  MBV3_DOT8(0, 0, 4, 8, 12, 16, 20, 24, 28);
  MBV3_DOT8(8, 32, 36, 40, 44, 48, 52, 56, 60);
}
#undef MBV3_DP
#undef MBV3_ACC
#undef MBV3_DOT8

// One 16-pixel x 16-channel tile: src[kp] + j is pair kp of the tile's pixel j; wg the group's
// packed weights; stores npix pixels (1..P) of `lanes` channels (1..16) at y (pixel stride
// Cout).  Every index into acc is a constant, so the accumulators stay in registers.
[[gnu::always_inline]] inline void tile(const uint32_t* const* src, int64_t j0, const bf16* wg, int64_t KP,
                                       __m512 bias, Act act, bf16* y, int64_t Cout, int npix, int lanes) {
  __m512 acc[P];
#pragma GCC unroll 16
  for (int j = 0; j < P; ++j) acc[j] = bias;
  for (int64_t kp = 0; kp < KP; ++kp) dot16(acc, _mm512_loadu_si512(wg + kp * 32), src[kp] + j0);
  if (lanes == 16 && npix == P && Cout == 16) {
    // Dense 16-channel pixels (the stem): two pixels per vcvtne2ps2bf16 (same rounding as
    // Vec::store's vcvtneps2bf16) and one 64-byte store.
#pragma GCC unroll 8
    for (int j = 0; j < P; j += 2) {
      const __m512bh h = _mm512_cvtne2ps_pbh(activate(Vec{acc[j + 1]}, act).v, activate(Vec{acc[j]}, act).v);
      _mm512_storeu_si512(y + j * 16, reinterpret_cast<const __m512i&>(h));
    }
  } else if (lanes == 16 && npix == P) {
#pragma GCC unroll 16
    for (int j = 0; j < P; ++j) activate(Vec{acc[j]}, act).store(y + j * Cout);
  } else {
#pragma GCC unroll 16
    for (int j = 0; j < P; ++j)
      if (j < npix) activate(Vec{acc[j]}, act).store_tail(y + j * Cout, lanes);
  }
}

template <int S>
void rows(const ConvArgs<bf16>& p, int64_t row_begin, int64_t row_end) {
  const Plan g = plan(p);
  walk_rows<P>(
      p, g, row_begin, row_end, [&](int64_t n, int64_t ih_org, bf16* win) { fill_window(p, g, n, ih_org, win); },
      [&](const bf16* row, int64_t ow0, int64_t np, uint32_t* A) { build_pairs<S>(p, g, row, ow0, np, A); },
      [&](const uint32_t* const* src, int64_t j, const bf16* wg, const float* bias, bf16* y, int npix,
          int lanes) __attribute__((always_inline)) {
        tile(src, j, wg, g.KP, _mm512_loadu_ps(bias), p.act, y, p.Cout, npix, lanes);
      });
}

inline void conv(const ConvArgs<bf16>& p, int64_t row_begin, int64_t row_end) {
  if (p.stride == 2) return rows<2>(p, row_begin, row_end);
  if (p.stride == 1) return rows<1>(p, row_begin, row_end);
  rows<0>(p, row_begin, row_end);
}

}  // namespace dp
}  // namespace
}  // namespace MBV3_ISA_NS
}  // namespace mbv3
