// The avx512_bf16 dense conv for bf16 x / w / y on bf16 dot products (vdpbf16ps): included by
// conv_bn_act_kernel.h in the avx512_bf16 bf16 unit only, for every shape the op accepts.
//
// The conv is a GEMM over K = Cin*k*k taps (in (ci, kh, kw) order) taken in pairs, as the 1x1
// K-pair kernel (pwconv_bn_act_k_pairs_kernel.h): per output pixel and 16 output channels, one
// vdpbf16ps per tap pair, acc += x[t]*w[t] + x[t+1]*w[t+1], 16 fp32 lanes.
//  - Weights: packed per call (Cout*K values) as [channel group of 16][pair][lane][2], zero in
//    the lanes past Cout and in an odd K's missing tap.
//  - Input: per band of kBand output rows, the input rows the band reads are copied (as bf16,
//    exact) into a zero-bordered planar window [Cin][rows][cols]: padding is zeros there, so the
//    gathers below never test bounds.  Rows and columns outside x are zeros, which add 0 * w.
//  - Pairs: per output row, chunks of kChunk pixels get their "im2col" pair rows
//    A[pair][pixel] = (x[t], x[t+1]) as 32-bit words, 16 pixels per vpermt2w (stride 1 and 2:
//    the two taps' input windows, even or consecutive words interleaved); other strides copy
//    per pixel.  An odd K's last pair has a zero high half, never a neighbour's value (a NaN
//    there would reach the sum as NaN * 0).
//  - Register tile: 16 pixels x 16 channels (16 accumulators, one weight vector, the pair
//    broadcast from A as an embedded {1to16} operand), started at the bias; K never blocked, so
//    a result does not depend on the tiling or the thread split.  Pixels past OW are computed
//    on zeros and not stored.
// Numerics: vdpbf16ps flushes denormal inputs and outputs and rounds its pair sums itself; the
// store rounds with vcvtneps2bf16 (Vec::store).  Held to the tolerance rule, not to bit
// equality with float32 (README, bfloat16).  NaN / inf in x reach exactly the outputs whose
// taps read them.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv_bn_act.h"
#include "common/simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {
namespace dp {

constexpr int P = 16;              // pixels per register tile
constexpr int64_t kChunk = 128;    // pixels per im2col chunk (a multiple of P)
constexpr int64_t kBandRows = 8;   // output rows per input window

// vpermt2w indices: word 2j from a (tap t), word 2j + 1 from b (tap t + 1), for pixel j at
// input column j * S.
template <int S>
inline __m512i pair_index() {
  alignas(64) uint16_t idx[32];
  for (int j = 0; j < 16; ++j) {
    idx[2 * j] = uint16_t(j * S);
    idx[2 * j + 1] = uint16_t(32 + j * S);
  }
  return _mm512_load_si512(idx);
}

struct Geometry {
  int64_t K, KP, G;     // taps, tap pairs, channel groups of 16
  int64_t OWp;          // OW rounded up to P
  int64_t R, Wp;        // window rows and columns (column c holds input column c - pad)
};

inline Geometry geometry(const ConvArgs<bf16>& p) {
  Geometry g;
  g.K = p.Cin * p.k * p.k;
  g.KP = (g.K + 1) / 2;
  g.G = (p.Cout + 15) / 16;
  g.OWp = (p.OW + P - 1) / P * P;
  g.R = (kBandRows - 1) * p.stride + p.k;
  // The last tile's gathers: 32-word loads from column (OWp - P) * s + kw (stride 1, 2), or
  // column (OWp - 1) * s + kw (any stride).
  g.Wp = std::max({(g.OWp - P) * p.stride + p.k + 32, (g.OWp - 1) * p.stride + p.k, p.pad + p.W});
  return g;
}

// [G][KP][16][2] from the [k][k][Cin][Cout] weight.
inline void pack_weights(const ConvArgs<bf16>& p, const Geometry& g, bf16* w) {
  std::fill(w, w + g.G * g.KP * 32, bf16{0});
  const int64_t k = p.k, Cin = p.Cin, Cout = p.Cout;
  for (int64_t ci = 0, t = 0; ci < Cin; ++ci)
    for (int64_t kh = 0; kh < k; ++kh)
      for (int64_t kw = 0; kw < k; ++kw, ++t) {
        const bf16* src = p.w + ((kh * k + kw) * Cin + ci) * Cout;
        for (int64_t c = 0; c < Cout; ++c) w[((c / 16) * g.KP + t / 2) * 32 + (c % 16) * 2 + (t & 1)] = src[c];
      }
}

// Input rows [ih_org, ih_org + R) of sample n into win ([Cin][R][Wp], zero outside x).
inline void fill_window(const ConvArgs<bf16>& p, const Geometry& g, int64_t n, int64_t ih_org, bf16* win) {
  const int64_t W = p.W, pad = p.pad;
  for (int64_t ci = 0; ci < p.Cin; ++ci)
    for (int64_t r = 0; r < g.R; ++r) {
      bf16* dst = win + (ci * g.R + r) * g.Wp;
      const int64_t ih = ih_org + r;
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

// The pair rows of pixels [ow0, ow0 + np) (np a multiple of P) of output row oh into
// A[KP][kChunk]; win_row0: the window row of oh's first tap row.
template <int S>
void build_pairs(const ConvArgs<bf16>& p, const Geometry& g, const bf16* win, int64_t win_row0, int64_t ow0,
                 int64_t np, uint32_t* A) {
  const int64_t k = p.k, s = p.stride;
  auto tap = [&](int64_t t) {  // the window position of tap t at pixel 0
    const int64_t ci = t / (k * k), kh = t / k % k, kw = t % k;
    return win + (ci * g.R + win_row0 + kh) * g.Wp + kw;
  };
  [[maybe_unused]] const __m512i idx = pair_index<S == 0 ? 1 : S>();
  for (int64_t kp = 0; kp < g.KP; ++kp) {
    const bf16* a = tap(2 * kp);
    const bf16* b = 2 * kp + 1 < g.K ? tap(2 * kp + 1) : nullptr;
    uint32_t* out = A + kp * kChunk;
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

// acc + the pair dot products of w and the broadcast x pair *a: one vdpbf16ps with an embedded
// {1to16} broadcast (GCC emits a separate vpbroadcastd otherwise); asm as fmadd_bcast in
// conv_bn_act_kernel.h, reading A without telling the compiler (sound: A is written only
// before the tile runs, in a separate call).
inline __m512 dot_bcast(__m512 acc, __m512i w, const uint32_t* a) {
  asm("vdpbf16ps (%1)%{1to16%}, %2, %0" : "+v"(acc) : "r"(a), "v"(w));
  return acc;
}

// One 16-pixel x 16-channel tile: A at the tile's first pixel, wg the group's packed weights;
// stores npix pixels (1..P) of `lanes` channels (1..16) at y (pixel stride Cout).  Every index
// into acc is a constant after unrolling, so the accumulators stay in registers.
inline void tile(const uint32_t* A, const bf16* wg, int64_t KP, __m512 bias, Act act, bf16* y, int64_t Cout,
                 int npix, int lanes) {
  __m512 acc[P];
#pragma GCC unroll 16
  for (int j = 0; j < P; ++j) acc[j] = bias;
  for (int64_t kp = 0; kp < KP; ++kp) {
    const __m512i wv = _mm512_loadu_si512(wg + kp * 32);
    const uint32_t* a = A + kp * kChunk;
#pragma GCC unroll 16
    for (int j = 0; j < P; ++j) acc[j] = dot_bcast(acc[j], wv, a + j);
  }
  if (lanes == 16 && npix == P) {
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
  const Geometry g = geometry(p);
  const int64_t s = p.stride, Cout = p.Cout;
  std::vector<bf16> w(size_t(g.G * g.KP * 32)), win(size_t(p.Cin * g.R * g.Wp));
  std::vector<uint32_t> A(size_t(g.KP * kChunk));
  pack_weights(p, g, w.data());
  std::vector<float> bias(size_t(g.G * 16), 0.0f);  // zero past Cout: full-width loads
  std::copy(p.b, p.b + Cout, bias.begin());
  for (int64_t r0 = row_begin; r0 < row_end;) {
    // A band: output rows [oh0, oh1) of sample n, from the window at input row oh0 * s - pad.
    const int64_t n = r0 / p.OH, oh0 = r0 % p.OH;
    const int64_t oh1 = std::min({oh0 + kBandRows, p.OH, oh0 + row_end - r0});
    fill_window(p, g, n, oh0 * s - p.pad, win.data());
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      bf16* yrow = p.y + (n * p.OH + oh) * p.OW * Cout;
      for (int64_t ow0 = 0; ow0 < p.OW; ow0 += kChunk) {
        const int64_t np = std::min(kChunk, g.OWp - ow0);
        build_pairs<S>(p, g, win.data(), (oh - oh0) * s, ow0, np, A.data());
        for (int64_t gi = 0; gi < g.G; ++gi) {
          const int lanes = int(std::min<int64_t>(16, Cout - gi * 16));
          for (int64_t j = 0; j < np; j += P)
            tile(A.data() + j, w.data() + gi * g.KP * 32, g.KP, _mm512_loadu_ps(bias.data() + gi * 16), p.act,
                 yrow + (ow0 + j) * Cout + gi * 16, Cout, int(std::min<int64_t>(P, p.OW - ow0 - j)), lanes);
        }
      }
    }
    r0 += oh1 - oh0;
  }
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
