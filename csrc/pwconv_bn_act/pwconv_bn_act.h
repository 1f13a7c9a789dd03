// Torch-free interface of the fused pointwise (1x1) conv + (folded) BatchNorm + activation
// (+ SE input scale, + residual) kernels.
#pragma once
#include <cstdint>

#include "common/activation.h"
#include "common/bf16.h"
#include "common/cpu_isa.h"

namespace mbv3 {

// A GEMM over NHWC T (float or bf16): y[M, Cout] = act(x[M, K] * diag(in_scale[n]) * w[K, Cout] + b) + r.
//   x: [M, K] rows of K = Cin channels (M = N*H*W), row stride K.
//   w: K-major [K][Cout] with row stride ldw (>= Cout): w[k * ldw + n] = weight[n, k];
//      or, with k_pairs (bf16 only), packed in K pairs for dot products (vdpbf16ps, BFDOT):
//      [ceil(K / 2)][ldw][2], w[(k / 2) * 2 * ldw + 2 * n + k % 2] = weight[n, k], ldw =
//      Cout rounded up to 16, the padding (columns past Cout, the odd-K half) zero;
//      or, with panel > 0, in panels of `panel` columns, each K-major and contiguous:
//      [ceil(Cout / panel)][K][panel], w[(n / panel) * K * panel + k * panel + n % panel] =
//      weight[n, k], the last panel's columns past Cout zero.  Every ISA reads any panel width;
//      with its own (PwTile::panel) each tile's weights are one stream.
//   in_scale: null or [N][K]; sample of row m is m / HW.  residual: null or [M][Cout].
//   b and in_scale are float32 for either T; sums are float32, y is rounded once on store.
template <class T>
struct PwConvArgs {
  const T* x;
  const T* w;
  const float* b;
  const float* in_scale;
  const T* residual;
  T* y;
  int64_t M, K, Cout, HW, ldw;
  Act act;
  // With in_scale: scale copies of the rows (true) or of the weight columns.  The caller picks
  // it from the layer's shape, so the result does not depend on how the rows are split.
  // (bf16 always scales rows: they are widened into a float32 copy anyway.)
  bool scale_rows = true;
  bool k_pairs = false;
  int64_t panel = 0;  // > 0: w in panels of this many columns (ldw unused)
};
using PwConvParams = PwConvArgs<float>;
using PwConvParamsBf16 = PwConvArgs<bf16>;

// Register tile of each ISA: rows of the widest tile, most columns of a tile, vector width;
// and the panel width the model packs float32 1x1 weights in for it (0: read K-major in place,
// where packing was not measured to pay).
struct PwTile { int mr, nr, vec, panel; };

// Computes rows [m_begin, m_end) x columns [n_begin, n_end) of y (any ranges; n_begin a
// multiple of the vector width keeps the loads aligned to the caller's vector split).
#define MBV3_DECLARE_PWCONV(ns)                                                                  \
  namespace ns {                                                                                 \
  void pwconv_bn_act(const PwConvParams& p, int64_t m_begin, int64_t m_end, int64_t n_begin,     \
                     int64_t n_end);                                                             \
  void pwconv_bn_act(const PwConvParamsBf16& p, int64_t m_begin, int64_t m_end, int64_t n_begin, \
                     int64_t n_end);                                                             \
  PwTile pwconv_tile();                                                                          \
  }
MBV3_DECLARE_PWCONV(scalar)
MBV3_DECLARE_PWCONV(avx2)
MBV3_DECLARE_PWCONV(avx512)
MBV3_DECLARE_PWCONV(avx512_bf16)
MBV3_DECLARE_PWCONV(neon)
#undef MBV3_DECLARE_PWCONV

template <class T>
using PwConvFn = void(const PwConvArgs<T>&, int64_t, int64_t, int64_t, int64_t);

// The column split of both 1x1 kernels: nvec vectors spread evenly over the fewest panels of at
// most nv vectors (the first nvec % count panels take one vector more).
struct EvenPanels {
  int64_t nvec, count;
  EvenPanels(int64_t nvec_, int64_t nv) : nvec(nvec_), count((nvec_ + nv - 1) / nv) {}
  int64_t vecs(int64_t i) const { return nvec / count + (i < nvec % count ? 1 : 0); }
};

// The row split of both 1x1 kernels: tiles of mr rows, then tiles of rest_rows rows.  A rest of
// fewer than mr - 1 rows would be one short tile doing few FMAs per weight load, far slower per
// row than the others (a 7x7 map's 49 rows in 6-row tiles: 8 x 6 + 1), so where it can, the rest
// is made up by taking a row from some of the mr-row tiles: 49 = 4 x 6 + 5 x 5.  Every output is
// summed in the same order whatever its tile: the split changes no bits.
struct RowTiles {
  int64_t full_rows;  // rows in mr-row tiles (the first ones)
  int rest_rows;      // the height of every tile after them
  RowTiles(int64_t m, int mr, bool balance) : full_rows(m / mr * mr), rest_rows(int(m - full_rows)) {
    const int64_t tiles = m / mr + 1, shorter = mr - rest_rows;  // mr - 1 rows each
    if (balance && rest_rows > 0 && rest_rows < mr - 1 && shorter <= tiles) {
      full_rows = (tiles - shorter) * mr;
      rest_rows = mr - 1;
    }
  }
};

// Columns per K-pair row: Cout rounded up to whole 16-lane vectors.
constexpr int64_t kPairCols = 16;
inline int64_t k_pair_ldw(int64_t cout) { return (cout + kPairCols - 1) / kPairCols * kPairCols; }

// bf16 with weights in K pairs (p.k_pairs), on dot products (pwconv_bn_act_k_pairs_kernel.h):
// vdpbf16ps (AVX512_BF16) and BFDOT (NEON with FEAT_BF16).  The row tile's vectors cover
// [n_begin, n_end) rounded up to whole vectors, which the packing's zero padding allows.
#define MBV3_DECLARE_PWCONV_K_PAIRS(ns)                                                            \
  namespace ns {                                                                                   \
  void pwconv_bn_act_k_pairs(const PwConvParamsBf16& p, int64_t m_begin, int64_t m_end, int64_t n_begin, \
                             int64_t n_end);                                                       \
  PwTile pwconv_tile_k_pairs();                                                                    \
  }
MBV3_DECLARE_PWCONV_K_PAIRS(avx512_bf16)
MBV3_DECLARE_PWCONV_K_PAIRS(neon_bf16)
#undef MBV3_DECLARE_PWCONV_K_PAIRS

// The kernel for `isa` and these arguments (k_pairs: the dot-product kernel, which only
// isa_has_k_pairs(isa) has; the binding unpacks the weight for the others).
bool isa_has_k_pairs(Isa isa);
template <class T>
PwConvFn<T>* pwconv_kernel(Isa isa, const PwConvArgs<T>& p);
PwTile pwconv_tile_of(Isa isa, bool k_pairs);

}  // namespace mbv3
