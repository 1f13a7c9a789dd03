// The tap pairs of the bf16 dot-product dense convs, written once for both kernels that sum
// them: conv_bn_act_dp.h (AVX512_BF16, vdpbf16ps) and conv_bn_act_dp_neon.h (FEAT_BF16, BFDOT).
// One pair order and one weight packing, so the two paths sum every output in the same order.
//  - Direct pairs first: at stride 2, taps kw and kw + 1 (kw even) of one (ci, kh) are one
//    aligned 32-bit word of the input window for every output pixel, read in place.
//  - Then the other taps, paired in (ci, kh, kw) order; an odd count's last pair has no second
//    tap (b = -1): its high half is zero in the built pairs and in the packed weights.
//  - Weights: [channel group of 16][pair][lane][2], zero past Cout and in a missing tap.
#pragma once
#include <algorithm>
#include <vector>

#include "conv_bn_act.h"
#include "common/simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {
namespace dp {

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

}  // namespace dp
}  // namespace
}  // namespace MBV3_ISA_NS
}  // namespace mbv3
