// Fused dense KxK conv + bias + activation for few input channels (MobileNetV3's stem), written
// once against `Vec` and compiled once per ISA (conv_bn_act_<isa>.cpp).
//
// Output NHWC with output channels in SIMD lanes; input read through its strides (the stem's
// input is an NCHW image: no layout copy).  A register tile is NV channel vectors x P output
// pixels of one output row; for each of the k*k*Cin taps it loads NV weight vectors (packed
// [k][k][Cin][Cout]) and broadcasts one input value per pixel:
//     acc[v][j] += broadcast(x[ci, ih, iw0 + j*stride + kw]) * w[kh][kw][ci][v*N : v*N + N].
// Bias and activation come in the epilogue; the last channel vector is masked when Cout is not
// a multiple of the vector width.  Padding: rows outside the input are skipped per block,
// columns are checked only in the border blocks (interior blocks index without tests), never a
// padded copy.  Interior blocks are P wide; a last partial one is moved back to end at the
// interior's end (it recomputes a few outputs, bit-identically).
//
// Accuracy: one serial chain per output over the k*k*Cin taps (27 for the stem), then + bias:
// the same order as a direct convolution, within tests/tolerance.py's rule.
//
// bf16 x / w / y: the weights are widened once per call and, per output row, the k input rows
// of every channel are widened (exactly) into a float32 window [Cin][k][W]; the float32 tiles
// run on that window and round y once on store (round-to-nearest-even), so a bf16 result is
// bitwise the float32 kernel's result on the same values, rounded.  (Widening per tap instead
// cost three FP-pipe instructions per broadcast where float32 folds it into the FMA.)  The
// avx512_bf16 and neon_bf16 units run bf16 dot products instead (conv_bn_act_dp.h,
// conv_bn_act_dp_neon.h), this path only for the shapes those kernels do not take.
#pragma once
#include <algorithm>
#include <vector>

#include "conv_bn_act.h"
#include "common/simd.h"
#if defined(MBV3_CONV_BF16_UNIT) && defined(MBV3_WITH_AVX512BF16)
#include "conv_bn_act_dp.h"
#elif defined(MBV3_CONV_BF16_UNIT) && defined(MBV3_WITH_NEON_BF16)
#include "conv_bn_act_dp_neon.h"
#endif

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

// Channel vectors per register tile: enough to cover Cout = 16 (the stem) in one pass.
constexpr int kMaxNV = Vec::N >= 8 ? 2 : 4;
// Pixels per tile: NV * P accumulators + NV weights + 1 broadcast within the register file.
constexpr int kMaxP = 14;
// Accuracy: each output sums its taps in segments of kSegment (in (ci, kh, kw) order), each
// segment one FMA chain, the segments added up at the end; a single chain of 27+ taps measured
// up to ~1.2x the tolerance rule's bound (tests/tolerance.py), segments of 9 ~0.4x.
constexpr int kSegment = 9;
constexpr int pixels(int NV) { return std::min(kMaxP, (Vec::kRegs - NV - 1) / NV); }

// acc + broadcast(*x) * w.  AVX-512: one FMA with an embedded {1to16} memory broadcast -- a
// separate vbroadcastss costs an FP-pipe slot on some cores (README, "Design notes"), and GCC
// does not fold the broadcast itself here (it shares loads between overlapping taps).  The
// address goes in as a register, not an "m" operand: with "m" GCC kept the accumulators in
// memory (store motion blocked) and ran 2x slower.  The asm reads x without telling the
// compiler, which is sound because the kernel never writes x.
inline Vec fmadd_bcast(const float* x, Vec w, Vec acc) {
#if defined(MBV3_ISA_AVX512) && (defined(__GNUC__) || defined(__clang__))
  __m512 r = acc.v;
  asm("vfmadd231ps (%1)%{1to16%}, %2, %0" : "+v"(r) : "r"(x), "v"(w.v));
  return {r};
#else
  return fmadd(Vec::set1(*x), w, acc);
#endif
}
inline Vec bcast(const float* x) { return Vec::set1(*x); }

// activate(v, act): common/simd.h.

// Geometry of the interior path.  UNIT_W: x's W stride is 1 (NCHW, the stem): with a
// compile-time stride S every broadcast is base + constant offset.  S = 0: run-time stride and
// W stride (channels_last inputs, views).
template <int S, bool UNIT_W>
struct Cols {
  int64_t s, sw;
  int64_t at(int64_t i) const {  // element offset of input column i
    return UNIT_W ? i : i * sw;
  }
  int64_t step() const { return S > 0 ? S : s; }
};

// The taps of one output row that fall inside the input rows, in (ci, kh, kw) order: input
// offset (relative to the tile's first input column) and weight offset (relative to the
// channel tile).  One flat loop over them keeps the loop overhead per tile to one exit.
struct Taps {
  const int64_t* x_off;
  const int64_t* w_off;
  int64_t n;
};

// NV channel vectors [c, c + NV*N) x P output pixels [ow, ow + P) of one output row, all input
// columns inside x (no checks).  TAIL: the last vector holds `tail` channels.
// Out of line: GCC keeps it so in the float32 unit anyway; inlined into the bf16 band loop it
// spilled accumulators.
template <int NV, bool TAIL, int S, bool UNIT_W, class Y>
__attribute__((noinline)) void tile_interior(const ConvArgs<float>& p, const float* xn, const Taps& taps, Y* yrow, int64_t c,
                          int tail, int64_t ow, Cols<S, UNIT_W> cols) {
  constexpr int P = pixels(NV);
  const int64_t Cout = p.Cout, step = cols.step();
  const float* x0 = xn + cols.at(ow * step - p.pad);
  const float* w0 = p.w + c;
  // The segments' partial sums (see kSegment): in registers when they fit beside the
  // accumulators (AVX-512 / NEON with one vector of channels), else in an L1 buffer, so that the
  // compiler does not spill accumulators instead (measured: AVX2 lost 30% that way).
  constexpr bool kSumInRegs = 2 * NV * P + NV + 1 <= Vec::kRegs;
  Vec sum[NV][P];
  alignas(64) float sum_buf[kSumInRegs ? 1 : NV * P * Vec::N];
  for (int v = 0; v < NV; ++v)
    for (int j = 0; j < P; ++j) {
      if constexpr (kSumInRegs) sum[v][j] = Vec::zero();
      else Vec::zero().store(sum_buf + (v * P + j) * Vec::N);
    }
  for (int64_t t0 = 0; t0 < taps.n; t0 += kSegment) {
    const int64_t t1 = std::min(taps.n, t0 + kSegment);
    Vec acc[NV][P];
    for (int v = 0; v < NV; ++v)
      for (int j = 0; j < P; ++j) acc[v][j] = Vec::zero();
    for (int64_t t = t0; t < t1; ++t) {
      const float* px = x0 + taps.x_off[t];
      const float* pw = w0 + taps.w_off[t];
      Vec wv[NV];
      for (int v = 0; v < NV; ++v)
        wv[v] = (TAIL && v == NV - 1) ? Vec::load_tail(pw + v * Vec::N, tail) : Vec::load(pw + v * Vec::N);
      for (int j = 0; j < P; ++j) {
        if constexpr (NV == 1) {
          acc[0][j] = fmadd_bcast(px + cols.at(j * step), wv[0], acc[0][j]);
        } else {
          const Vec xb = bcast(px + cols.at(j * step));
          for (int v = 0; v < NV; ++v) acc[v][j] = fmadd(xb, wv[v], acc[v][j]);
        }
      }
    }
    for (int v = 0; v < NV; ++v)
      for (int j = 0; j < P; ++j) {
        if constexpr (kSumInRegs) {
          sum[v][j] = add(sum[v][j], acc[v][j]);
        } else {
          float* ps = sum_buf + (v * P + j) * Vec::N;
          add(Vec::load(ps), acc[v][j]).store(ps);
        }
      }
  }
  if constexpr (!kSumInRegs)
    for (int v = 0; v < NV; ++v)
      for (int j = 0; j < P; ++j) sum[v][j] = Vec::load(sum_buf + (v * P + j) * Vec::N);
  Vec bias[NV];
  for (int v = 0; v < NV; ++v)
    bias[v] = (TAIL && v == NV - 1) ? Vec::load_tail(p.b + c + v * Vec::N, tail) : Vec::load(p.b + c + v * Vec::N);
  for (int j = 0; j < P; ++j) {
    Y* py = yrow + (ow + j) * Cout + c;
    for (int v = 0; v < NV; ++v) {
      const Vec out = activate(add(sum[v][j], bias[v]), p.act);
      if (TAIL && v == NV - 1) out.store_tail(py + v * Vec::N, tail);
      else out.store(py + v * Vec::N);
    }
  }
}

// One output pixel that may touch the padding: every column is tested (border pixels and
// rows too narrow for an interior tile).
template <int NV, bool TAIL, class Y>
inline void pixel_checked(const ConvArgs<float>& p, const float* xn, int64_t ih0, int64_t ih_org, Y* yrow, int64_t c,
                          int tail, int64_t ow) {
  const int k = p.k;
  const int64_t Cout = p.Cout, iw0 = ow * p.stride - p.pad;
  Vec sum[NV], acc[NV];  // as tile_interior: partial sums over segments of kSegment taps
  for (int v = 0; v < NV; ++v) sum[v] = acc[v] = Vec::zero();
  int64_t t = 0;  // taps in the current segment
  for (int64_t ci = 0; ci < p.Cin; ++ci) {
    for (int kh = 0; kh < k; ++kh) {
      const int64_t ih = ih0 + kh;
      if (ih < 0 || ih >= p.H) continue;
      const float* px = xn + ci * p.sx_c + (ih - ih_org) * p.sx_h;
      const float* pw = p.w + ((int64_t(kh) * k) * p.Cin + ci) * Cout + c;
      for (int kw = 0; kw < k; ++kw, pw += p.Cin * Cout) {
        const int64_t iw = iw0 + kw;
        if (iw >= 0 && iw < p.W) {
          const Vec xb = bcast(px + iw * p.sx_w);
          for (int v = 0; v < NV; ++v) {
            const Vec wv = (TAIL && v == NV - 1) ? Vec::load_tail(pw + v * Vec::N, tail) : Vec::load(pw + v * Vec::N);
            acc[v] = fmadd(xb, wv, acc[v]);
          }
        }
        // Padded columns count as taps (tile_interior's list has them for every row in range)
        // so that border and interior outputs are summed in the same segments.
        if (++t == kSegment) {
          for (int v = 0; v < NV; ++v) sum[v] = add(sum[v], acc[v]), acc[v] = Vec::zero();
          t = 0;
        }
      }
    }
  }
  for (int v = 0; v < NV; ++v) sum[v] = add(sum[v], acc[v]);
  Y* py = yrow + ow * Cout + c;
  for (int v = 0; v < NV; ++v) {
    const float* pb = p.b + c + v * Vec::N;
    const Vec bias = (TAIL && v == NV - 1) ? Vec::load_tail(pb, tail) : Vec::load(pb);
    const Vec out = activate(add(sum[v], bias), p.act);
    if (TAIL && v == NV - 1) out.store_tail(py + v * Vec::N, tail);
    else out.store(py + v * Vec::N);
  }
}

// One output row, channel vectors [c, c + NV*N): border blocks checked, interior blocks not.
template <int NV, bool TAIL, int S, bool UNIT_W, class Y>
void row_tiles(const ConvArgs<float>& p, const float* xn, int64_t ih0, int64_t ih_org, const Taps& taps, Y* yrow, int64_t c,
               int tail, int64_t ow_lo, int64_t ow_hi, Cols<S, UNIT_W> cols) {
  constexpr int P = pixels(NV);
  auto checked = [&](int64_t from, int64_t to) {
    for (int64_t ow = from; ow < to; ++ow) pixel_checked<NV, TAIL>(p, xn, ih0, ih_org, yrow, c, tail, ow);
  };
  if (ow_hi - ow_lo >= P) {
    checked(0, ow_lo);
    int64_t ow = ow_lo;
    for (; ow + P <= ow_hi; ow += P) tile_interior<NV, TAIL>(p, xn, taps, yrow, c, tail, ow, cols);
    if (ow < ow_hi) tile_interior<NV, TAIL>(p, xn, taps, yrow, c, tail, ow_hi - P, cols);
    checked(ow_hi, p.OW);
  } else {
    checked(0, p.OW);  // too narrow for one interior block: all checked
  }
}

// Channel vectors [v*N, (v + NV)*N) of one output row; the last one is the masked tail when
// it is Cout's last vector and Cout is not a multiple of N.
template <int NV, int S, bool UNIT_W, class Y>
void chunk(const ConvArgs<float>& p, const float* xn, int64_t ih0, int64_t ih_org, const Taps& taps, Y* yrow, int64_t v,
           int64_t groups, int tail, int64_t ow_lo, int64_t ow_hi, Cols<S, UNIT_W> cols) {
  if (tail > 0 && v + NV == groups)
    row_tiles<NV, true>(p, xn, ih0, ih_org, taps, yrow, v * Vec::N, tail, ow_lo, ow_hi, cols);
  else
    row_tiles<NV, false>(p, xn, ih0, ih_org, taps, yrow, v * Vec::N, 0, ow_lo, ow_hi, cols);
}

// All channels of one output row: tiles of kMaxNV vectors, then 2 (NEON, scalar) and 1.
template <int S, bool UNIT_W, class Y>
void row(const ConvArgs<float>& p, const float* xn, int64_t ih0, int64_t ih_org, const Taps& taps, Y* yrow, int64_t ow_lo,
         int64_t ow_hi, Cols<S, UNIT_W> cols) {
  const int tail = int(p.Cout % Vec::N);
  const int64_t groups = p.Cout / Vec::N + (tail > 0);
  int64_t v = 0;
  for (; groups - v >= kMaxNV; v += kMaxNV)
    chunk<kMaxNV>(p, xn, ih0, ih_org, taps, yrow, v, groups, tail, ow_lo, ow_hi, cols);
  if constexpr (kMaxNV > 2) {
    if (groups - v >= 2) {
      chunk<2>(p, xn, ih0, ih_org, taps, yrow, v, groups, tail, ow_lo, ow_hi, cols);
      v += 2;
    }
  }
  if (groups - v == 1) chunk<1>(p, xn, ih0, ih_org, taps, yrow, v, groups, tail, ow_lo, ow_hi, cols);
}

// Interior output columns [lo, hi): every tap inside the input row.
struct Interior {
  int64_t lo, hi;
  explicit Interior(const ConvArgs<float>& p) {
    const int64_t s = p.stride, pad = p.pad, k = p.k;
    lo = std::min<int64_t>(p.OW, (pad + s - 1) / s);
    const int64_t last = p.W - 1 + pad - (k - 1);  // largest ow*s with the last tap in bounds
    hi = last < 0 ? lo : std::max(lo, std::min<int64_t>(p.OW, last / s + 1));
  }
};

// Output row oh of one sample into yrow.  xn: the sample's input, its row ih at
// (ih - ih_org) * sx_h (0 for x itself, the first window row for bf16's widened window).
// offsets: 2 * k*k*Cin scratch.
template <int S, bool UNIT_W, class Y>
void out_row(const ConvArgs<float>& p, const float* xn, int64_t ih_org, int64_t oh, Y* yrow,
             int64_t* offsets, Interior in) {
  const int64_t s = p.stride, k = p.k, ih0 = oh * s - p.pad;
  const Cols<S, UNIT_W> cols{s, p.sx_w};
  Taps taps{offsets, offsets + k * k * p.Cin, 0};
  int64_t* xo = offsets;
  int64_t* wo = offsets + k * k * p.Cin;
  for (int64_t ci = 0; ci < p.Cin; ++ci)
    for (int64_t kh = 0; kh < k; ++kh) {
      const int64_t ih = ih0 + kh;
      if (ih < 0 || ih >= p.H) continue;  // a padding row: no taps
      for (int64_t kw = 0; kw < k; ++kw, ++taps.n) {
        xo[taps.n] = ci * p.sx_c + (ih - ih_org) * p.sx_h + cols.at(kw);
        wo[taps.n] = ((kh * k + kw) * p.Cin + ci) * p.Cout;
      }
    }
  row<S, UNIT_W>(p, xn, ih0, ih_org, taps, yrow, in.lo, in.hi, cols);
}

template <int S, bool UNIT_W>
void rows_kernel(const ConvArgs<float>& p, int64_t row_begin, int64_t row_end) {
  const Interior in(p);
  std::vector<int64_t> offsets(size_t(2 * p.k * p.k * p.Cin));
  for (int64_t r = row_begin; r < row_end; ++r)
    out_row<S, UNIT_W>(p, p.x + r / p.OH * p.sx_n, 0, r % p.OH, p.y + r * p.OW * p.Cout, offsets.data(), in);
}

#ifdef MBV3_CONV_BF16_UNIT
// bf16: float32 weights and a float32 window of the input rows that a band of kBand output rows
// reads, widened once per band (rows shared by neighbouring output rows are widened once); then
// the float32 tiles.  The window is planar, [Cin][rows][W] (compile-time column offsets), unless
// x's pixels are dense channels-last runs: then [rows][W][Cin], each row one vector copy (a
// per-element gather into the planar layout cost more than the conv).
constexpr int64_t kBand = 8;
template <int S, bool PLANAR>
void rows_kernel_bf16(const ConvArgs<bf16>& p, int64_t row_begin, int64_t row_end) {
  const int64_t k = p.k, s = p.stride, W = p.W, Cin = p.Cin, nw = k * k * Cin * p.Cout;
  const int64_t R = (kBand - 1) * s + k;  // window rows
  std::vector<float> w(static_cast<size_t>(nw)), win(static_cast<size_t>(Cin * R * W));
  for (int64_t i = 0; i < nw; ++i) w[i] = bf16_to_float(p.w[i]);
  const ConvArgs<float> q{nullptr, w.data(), p.b, nullptr, p.N, Cin, p.H, W, 0,
                          PLANAR ? R * W : 1, PLANAR ? W : W * Cin, PLANAR ? 1 : Cin,
                          p.Cout, p.OH, p.OW, p.k, p.stride, p.pad, p.act};
  const Interior in(q);
  std::vector<int64_t> offsets(size_t(2 * k * k * Cin));
  auto widen = [](const bf16* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + Vec::N <= n; i += Vec::N) Vec::load(src + i).store(dst + i);
    if (i < n) Vec::load_tail(src + i, int(n - i)).store_tail(dst + i, int(n - i));
  };
  for (int64_t r0 = row_begin; r0 < row_end;) {
    // A band: output rows [oh0, oh1) of sample n, input rows [ih_org, ih_end) clipped to x.
    const int64_t n = r0 / p.OH, oh0 = r0 % p.OH;
    const int64_t oh1 = std::min({oh0 + kBand, p.OH, oh0 + row_end - r0});
    const int64_t ih_org = oh0 * s - p.pad, ih_end = (oh1 - 1) * s - p.pad + k;
    for (int64_t ih = std::max<int64_t>(0, ih_org); ih < std::min(ih_end, p.H); ++ih) {
      const bf16* src = p.x + n * p.sx_n + ih * p.sx_h;
      if constexpr (!PLANAR) {
        widen(src, win.data() + (ih - ih_org) * W * Cin, W * Cin);
      } else {
        for (int64_t ci = 0; ci < Cin; ++ci) {
          float* dst = win.data() + (ci * R + ih - ih_org) * W;
          if (p.sx_w == 1) widen(src + ci * p.sx_c, dst, W);
          else for (int64_t i = 0; i < W; ++i) dst[i] = bf16_to_float(src[ci * p.sx_c + i * p.sx_w]);
        }
      }
    }
    for (int64_t oh = oh0; oh < oh1; ++oh)
      out_row<S, PLANAR && S != 0>(q, win.data(), ih_org, oh, p.y + (n * p.OH + oh) * p.OW * p.Cout, offsets.data(), in);
    r0 += oh1 - oh0;
  }
}
#endif

// The unit's element type.  One per translation unit: conv_bn_act_<isa>.cpp builds the float32
// entry point, conv_bn_act_bf16_<isa>.cpp (MBV3_CONV_BF16_UNIT) the bf16 one.  Kept apart so that
// the bf16 instantiations do not shift GCC's unit-wide inlining decisions: the float32 unit
// compiles to the same code as before bf16 existed (in one unit GCC stopped inlining some
// border blocks of the float32 path).
#ifndef MBV3_CONV_BF16_UNIT
using Elem = float;
#else
using Elem = bf16;
#endif

}  // namespace

void conv_bn_act(const ConvArgs<Elem>& p, int64_t row_begin, int64_t row_end) {
#ifndef MBV3_CONV_BF16_UNIT
  // NCHW-like inputs (W stride 1) at stride 1 or 2 get compile-time column offsets; anything
  // else (channels_last, views, stride 3+) the run-time ones.
  if (p.sx_w == 1 && p.stride == 2) return rows_kernel<2, true>(p, row_begin, row_end);
  if (p.sx_w == 1 && p.stride == 1) return rows_kernel<1, true>(p, row_begin, row_end);
  return rows_kernel<0, false>(p, row_begin, row_end);
#else
#if defined(MBV3_WITH_AVX512BF16) || defined(MBV3_WITH_NEON_BF16)
  // bf16 dot products (conv_bn_act_dp.h, conv_bn_act_dp_neon.h) for all but extreme strides.
  if (dp::covers(p)) return dp::conv(p, row_begin, row_end);
#endif
  // Dense channels-last pixels: the window copies rows as they are (run-time column offsets,
  // as float32 channels_last); else planar, unit W stride.
  if (p.sx_c == 1 && p.sx_w == p.Cin) return rows_kernel_bf16<0, false>(p, row_begin, row_end);
  if (p.stride == 2) return rows_kernel_bf16<2, true>(p, row_begin, row_end);
  if (p.stride == 1) return rows_kernel_bf16<1, true>(p, row_begin, row_end);
  return rows_kernel_bf16<0, true>(p, row_begin, row_end);
#endif
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
