// The tap pairs of the bf16 dot-product dense convs, written once for both kernels that sum
// them: conv_bn_act_dp.h (AVX512_BF16, vdpbf16ps) and conv_bn_act_dp_neon.h (FEAT_BF16, BFDOT).
// One pair order and one weight packing, so the two paths sum every output in the same order.
//  - Direct pairs first: at stride 2, taps kw and kw + 1 (kw even) of one (ci, kh) are one
//    aligned 32-bit word of the input window for every output pixel, read in place.
//  - Then the other taps, paired in (ci, kh, kw) order; an odd count's last pair has no second
//    tap (b = -1): its high half is zero in the built pairs and in the packed weights.
//  - Weights: [channel group of 16][pair][lane][2], zero past Cout and in a missing tap.
//  - One walk over the output rows (walk_rows): bands of kBandRows rows from one input window,
//    each row in chunks of kChunk pixels whose pairs are built, then the kernel's tiles.
#pragma once
#include <algorithm>
#include <memory>
#include <vector>

#include "conv_bn_act.h"
#include "common/simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {
namespace dp {

constexpr int64_t kChunk = 128;   // pixels per built chunk (a multiple of each kernel's tile)
constexpr int64_t kBandRows = 8;  // output rows per input window

struct Pair {
  int64_t a, b;  // taps (ci, kh, kw) flattened; b = -1: none (zero high half)
  bool direct;   // read from the window (stride 2, kw even, b = a + 1)
};

struct Plan {
  int64_t KP, G;       // tap pairs, channel groups of 16
  int64_t OWp;         // OW rounded up to the kernel's pixels per tile
  int64_t R, Wp;       // window rows and columns (column c holds input column c - pad); Wp even
  std::vector<Pair> pairs;   // direct pairs first
  std::vector<int64_t> off;  // per tap: window offset (ci * R + kh) * Wp + kw
  int64_t n_built;     // pairs built per output row (the non-direct ones)
};

// The pairs and the taps' window offsets for a window of R x Wp (the kernel's window_size()).
inline Plan plan_for(const ConvArgs<bf16>& p, int64_t OWp, int64_t R, int64_t Wp) {
  Plan g;
  const int64_t k = p.k, s = p.stride;
  g.G = (p.Cout + 15) / 16;
  g.OWp = OWp;
  g.R = R;
  g.Wp = Wp;
  for (int64_t ci = 0; ci < p.Cin; ++ci)
    for (int64_t kh = 0; kh < k; ++kh)
      for (int64_t kw = 0; kw < k; ++kw) g.off.push_back((ci * R + kh) * Wp + kw);
  std::vector<int64_t> single;
  for (int64_t ci = 0; ci < p.Cin; ++ci)
    for (int64_t kh = 0; kh < k; ++kh) {
      const int64_t t0 = (ci * k + kh) * k;
      int64_t kw = 0;
      if (s == 2)
        for (; kw + 1 < k; kw += 2) g.pairs.push_back({t0 + kw, t0 + kw + 1, true});
      for (; kw < k; ++kw) single.push_back(t0 + kw);
    }
  g.n_built = int64_t(single.size() + 1) / 2;
  for (size_t i = 0; i < single.size(); i += 2)
    g.pairs.push_back({single[i], i + 1 < single.size() ? single[i + 1] : -1, false});
  g.KP = int64_t(g.pairs.size());
  return g;
}

// [G][KP][16][2] from the [k][k][Cin][Cout] weight, in the plan's pair order.
inline void pack_weights(const ConvArgs<bf16>& p, const Plan& g, bf16* w) {
  std::fill(w, w + g.G * g.KP * 32, bf16{0});
  const int64_t k = p.k, Cin = p.Cin, Cout = p.Cout;
  for (int64_t kp = 0; kp < g.KP; ++kp)
    for (int h = 0; h < 2; ++h) {
      const int64_t t = h ? g.pairs[kp].b : g.pairs[kp].a;
      if (t < 0) continue;
      const int64_t ci = t / (k * k), kh = t / k % k, kw = t % k;
      const bf16* src = p.w + ((kh * k + kw) * Cin + ci) * Cout;
      for (int64_t c = 0; c < Cout; ++c) w[((c / 16) * g.KP + kp) * 32 + (c % 16) * 2 + h] = src[c];
    }
}

// The weights as the tiles read them (pack_weights) and the bias, zero past Cout so that
// full-width loads read zeros.
struct Packed {
  std::vector<bf16> w;
  std::vector<float> bias;
  Packed(const ConvArgs<bf16>& p, const Plan& g) : w(size_t(g.G * g.KP * 32)), bias(size_t(g.G * 16), 0.0f) {
    pack_weights(p, g, w.data());
    std::copy(p.b, p.b + p.Cout, bias.begin());
  }
};

// Output rows [row_begin, row_end) of the flattened (sample, row) range, in tiles of P pixels.
// Per band of at most kBandRows rows of one sample, fill(n, ih_org, win) copies the input rows
// [ih_org, ih_org + R) into the window; per output row and chunk of kChunk pixels,
// build(row, ow0, np, A) writes the non-direct pairs of pixels [ow0, ow0 + np) into
// A[n_built][kChunk], then tile(src, j, wg, bias, y, npix, lanes) sums each tile of P pixels and
// (up to) 16 channels: src[kp][j] is pair kp of the chunk's pixel j as a 32-bit word (tap a in
// the low half); a direct pair is read from the window in place (word ow + kw / 2 of the row at
// the tap's kh).  Forced inline, with the kernels' tile lambdas: the hot loop then compiles as
// when each kernel wrote its own walk (out of line, GCC called the vdpbf16ps tile per tile).
template <int P, class Fill, class Build, class Tile>
[[gnu::always_inline]] inline void walk_rows(const ConvArgs<bf16>& p, const Plan& g, int64_t row_begin,
                                             int64_t row_end, Fill&& fill, Build&& build, Tile&& tile) {
  const int64_t s = p.stride, Cout = p.Cout;
  const Packed pk(p, g);
  // Uninitialized buffers (every element read is written first): value-initializing the
  // window cost more than filling it.
  std::unique_ptr<bf16[]> win(new bf16[size_t(p.Cin * g.R * g.Wp)]);
  std::unique_ptr<uint32_t[]> A(new uint32_t[size_t(std::max<int64_t>(1, g.n_built) * kChunk)]);
  std::vector<const uint32_t*> src(size_t(g.KP));
  for (int64_t r0 = row_begin; r0 < row_end;) {
    const int64_t n = r0 / p.OH, oh0 = r0 % p.OH;
    const int64_t oh1 = std::min({oh0 + kBandRows, p.OH, oh0 + row_end - r0});
    fill(n, oh0 * s - p.pad, win.get());
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const bf16* row = win.get() + (oh - oh0) * s * g.Wp;
      bf16* yrow = p.y + (n * p.OH + oh) * p.OW * Cout;
      for (int64_t ow0 = 0; ow0 < p.OW; ow0 += kChunk) {
        const int64_t np = std::min(kChunk, g.OWp - ow0);
        build(row, ow0, np, A.get());
        for (int64_t kp = 0; kp < g.KP; ++kp)
          src[kp] = g.pairs[kp].direct ? reinterpret_cast<const uint32_t*>(row + g.off[g.pairs[kp].a]) + ow0
                                       : A.get() + (kp - (g.KP - g.n_built)) * kChunk;
        for (int64_t gi = 0; gi < g.G; ++gi) {
          const int lanes = int(std::min<int64_t>(16, Cout - gi * 16));
          for (int64_t j = 0; j < np; j += P)
            tile(src.data(), j, pk.w.data() + gi * g.KP * 32, pk.bias.data() + gi * 16,
                 yrow + (ow0 + j) * Cout + gi * 16, int(std::min<int64_t>(P, p.OW - ow0 - j)), lanes);
        }
      }
    }
    r0 += oh1 - oh0;
  }
}

}  // namespace dp
}  // namespace
}  // namespace MBV3_ISA_NS
}  // namespace mbv3
