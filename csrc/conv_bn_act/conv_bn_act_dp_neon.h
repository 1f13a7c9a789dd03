// The neon_bf16 dense conv for bf16 x / w / y on BFDOT (FEAT_BF16): included by
// conv_bn_act_kernel.h in the neon_bf16 bf16 unit only, for every shape whose input window fits
// 8 MB (covers(); the others run the widening kernel).  The NEON counterpart of
// conv_bn_act_dp.h (avx512_bf16): the same tap pairs in the same order, the same numeric rules.
//
// The conv is a GEMM over the K = Cin*k*k taps taken in pairs: per output pixel and 4 output
// channels, one BFDOT per tap pair, acc += x[t]*w[t] + x[u]*w[u], 4 fp32 lanes.
//  - Input: per band of kBandRows output rows, the input rows the band reads are copied (bf16,
//    exact) into a zero-bordered planar window [Cin][rows][cols]: padding taps are exact zeros
//    there, so nothing below tests bounds.
//  - Pairs, as conv_bn_act_dp.h (the order and the weight packing: conv_bn_act_pairs.h): at
//    stride 2, taps kw and kw + 1 (kw even) of one (ci, kh) are one aligned 32-bit word of the
//    window for every output pixel, read from the window itself; the other taps are paired in
//    (ci, kh, kw) order into pair rows A[pair][pixel], built per output row and chunk of kChunk
//    pixels.  An odd count's last pair has a zero high half, never a neighbour's value (a NaN
//    there would reach the sum as NaN * 0).
//  - Weights: packed per call in the same pair order, [channel group of 16][pair][lane][2],
//    zero in the lanes past Cout and in the missing tap of a last odd pair.
//  - Register tile: 4 pixels x up to 16 channels (16 accumulators): one 128-bit load holds the
//    4 pixels' pairs, and vbfdotq_laneq_f32 takes one pixel's pair from its lane.  Accumulators
//    start at the bias; K is never blocked, so a result does not depend on the tiling or the
//    thread split.  Pixels past OW are computed on the window's zero slack and not stored.
// Numerics: BFDOT (without FEAT_EBF16) flushes denormals and may round its pair sum itself;
// the store rounds to nearest even (Vec::store).  Held to the tolerance rule, not to bit
// equality with float32 (README, bfloat16).  NaN / inf in x reach exactly the outputs whose
// taps read them.
#pragma once
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

constexpr int P = 4;  // pixels per register tile (one 128-bit vector of pairs)

// The window's rows and (even) columns.  Last reads: column (OWp - 1) * s + k - 1 (built
// pairs), word OWp - 1 + kw / 2 of a row with kw <= k - 3 (direct pairs).
inline void window_size(const ConvArgs<bf16>& p, int64_t OWp, int64_t& R, int64_t& Wp) {
  const int64_t k = p.k, s = p.stride;
  R = (kBandRows - 1) * s + k;
  Wp = std::max((OWp - 1) * s + k, p.pad + p.W);
  Wp += Wp & 1;
}

// The shapes this kernel takes: as conv_bn_act_dp.h, all whose window fits kMaxWindow bytes.
constexpr int64_t kMaxWindow = int64_t(8) << 20;
inline bool covers(const ConvArgs<bf16>& p) {
  int64_t R, Wp;
  if (p.stride > kMaxWindow || p.OW > kMaxWindow) return false;  // keeps R and Wp in range
  window_size(p, (p.OW + P - 1) / P * P, R, Wp);
  return double(p.Cin) * double(R) * double(Wp) * double(sizeof(bf16)) <= double(kMaxWindow);
}

// The plan for tiles of P pixels (conv_bn_act_pairs.h: the same pairs as conv_bn_act_dp.h).
inline Plan plan(const ConvArgs<bf16>& p) {
  const int64_t OWp = (p.OW + P - 1) / P * P;
  int64_t R, Wp;
  window_size(p, OWp, R, Wp);
  return plan_for(p, OWp, R, Wp);
}

// Input rows [ih_org, ih_org + R) of sample n into win ([Cin][R][Wp], zero outside x).
inline void fill_window(const ConvArgs<bf16>& p, const Plan& g, int64_t n, int64_t ih_org, bf16* win) {
  const int64_t W = p.W, pad = p.pad;
  for (int64_t ci = 0; ci < p.Cin; ++ci)
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t ih = ih_org + r;
      bf16* dst = win + (ci * g.R + r) * g.Wp;
      if (ih < 0 || ih >= p.H) {
        std::memset(dst, 0, sizeof(bf16) * g.Wp);
        continue;
      }
      std::memset(dst, 0, sizeof(bf16) * pad);
      std::memset(dst + pad + W, 0, sizeof(bf16) * (g.Wp - pad - W));
      const bf16* src = p.x + n * p.sx_n + ci * p.sx_c + ih * p.sx_h;
      if (p.sx_w == 1) std::memcpy(dst + pad, src, sizeof(bf16) * W);
      else for (int64_t i = 0; i < W; ++i) dst[pad + i] = src[i * p.sx_w];
    }
}

// The built pairs of pixels [ow0, ow0 + np) of output row oh into A[n_built][kChunk], tap a in
// a word's low half; row: the window at oh's first tap row.  S: the stride at compile time (0:
// p.stride).
template <int S>
void build_pairs(const ConvArgs<bf16>& p, const Plan& g, const bf16* row, int64_t ow0, int64_t np, uint32_t* A) {
  const int64_t s = S ? S : p.stride;
  for (int64_t m = 0; m < g.n_built; ++m) {
    const Pair& pr = g.pairs[g.KP - g.n_built + m];
    const bf16* a = row + g.off[pr.a] + ow0 * s;
    uint32_t* out = A + m * kChunk;
    if (pr.b >= 0) {
      const bf16* b = row + g.off[pr.b] + ow0 * s;
      for (int64_t j = 0; j < np; ++j) out[j] = uint32_t(a[j * s].bits) | uint32_t(b[j * s].bits) << 16;
    } else {
      for (int64_t j = 0; j < np; ++j) out[j] = a[j * s].bits;
    }
  }
}

// acc[j][v] += the pair of pixel j (lane j of a) . channels 4v..4v+3 of the weight pair w[v].
template <int NV, int J>
[[gnu::always_inline]] inline void dot_pixel(float32x4_t (&acc)[P][NV], const bfloat16x8_t (&w)[NV], bfloat16x8_t a) {
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) acc[J][v] = vbfdotq_laneq_f32(acc[J][v], w[v], a, J);
}

// One 4-pixel x 4*NV-channel tile: src[kp] + j0 holds pair kp of the tile's 4 pixels; wg
// the group's packed weights; stores npix pixels (1..P) of `lanes` channels (1..4 * NV) at y
// (pixel stride Cout).
template <int NV>
void tile(const uint32_t* const* src, int64_t j0, const bf16* wg, int64_t KP, const float* bias, Act act, bf16* y,
          int64_t Cout, int npix, int lanes) {
  float32x4_t acc[P][NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const float32x4_t b = vld1q_f32(bias + 4 * v);
#pragma GCC unroll 4
    for (int j = 0; j < P; ++j) acc[j][v] = b;
  }
  const uint16_t* wk = reinterpret_cast<const uint16_t*>(wg);
  for (int64_t kp = 0; kp < KP; ++kp, wk += 32) {
    bfloat16x8_t w[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) w[v] = vreinterpretq_bf16_u16(vld1q_u16(wk + 8 * v));
    const bfloat16x8_t a = vreinterpretq_bf16_u32(vld1q_u32(src[kp] + j0));
    dot_pixel<NV, 0>(acc, w, a);
    dot_pixel<NV, 1>(acc, w, a);
    dot_pixel<NV, 2>(acc, w, a);
    dot_pixel<NV, 3>(acc, w, a);
  }
#pragma GCC unroll 4
  for (int j = 0; j < P; ++j) {
    if (j >= npix) break;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const Vec out = activate(Vec{acc[j][v]}, act);
      const int n = lanes - 4 * v;
      if (n >= 4) out.store(y + j * Cout + 4 * v);
      else out.store_tail(y + j * Cout + 4 * v, n);
    }
  }
}

using TileFn = void (*)(const uint32_t* const*, int64_t, const bf16*, int64_t, const float*, Act, bf16*, int64_t,
                        int, int);
inline TileFn tile_for(int lanes) {  // the fewest channel vectors that hold `lanes` (1..16)
  switch ((lanes + 3) / 4) {
    case 1: return &tile<1>;
    case 2: return &tile<2>;
    case 3: return &tile<3>;
    default: return &tile<4>;
  }
}

template <int S>
void rows(const ConvArgs<bf16>& p, int64_t row_begin, int64_t row_end) {
  const Plan g = plan(p);
  walk_rows<P>(
      p, g, row_begin, row_end, [&](int64_t n, int64_t ih_org, bf16* win) { fill_window(p, g, n, ih_org, win); },
      [&](const bf16* row, int64_t ow0, int64_t np, uint32_t* A) { build_pairs<S>(p, g, row, ow0, np, A); },
      [&](const uint32_t* const* src, int64_t j, const bf16* wg, const float* bias, bf16* y, int npix,
          int lanes) { tile_for(lanes)(src, j, wg, g.KP, bias, p.act, y, p.Cout, npix, lanes); });
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
