// torch binding of mbv3::expand_dwconv_bn_act: an inverted residual block's expand 1x1 conv
// (+ BN + act) and its depthwise conv (+ BN + act) in one pass over bands of output rows.
//
// Why: the expanded tensor is the largest activation of a block (64 x 112 x 112 floats =
// 3.2 MB in MobileNetV3-Large's second block).  Written by one op and read back by the next,
// it round-trips through L3/DRAM; here each thread expands only the input rows its current
// band of depthwise output rows needs into a window that stays in L2, and runs the depthwise
// kernel on that window.  Rows the next band also needs (the kernel's vertical overlap) are
// moved to the window's front, not recomputed.
//
// No kernel of its own: it composes the per-ISA pointwise and depthwise kernels, so every
// output value is computed by exactly the arithmetic of pwconv_bn_act followed by
// dwconv_bn_act (the tests check equality with the two ops, bit for bit).
//
// The one-call forward (mobilenet_v3) also runs a block without SE through here to its end:
// expand_dwconv_project_cpu hands each band of depthwise rows, still in L2, to the block's
// project 1x1 conv (+ residual), so the depthwise output is never written whole nor read back
// from L3 (B01 and B02 at batch 8: 3.2-3.6 MB each in bf16, twice that in float32).  Same
// kernels, same sums.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "dwconv_bn_act/dwconv_bn_act.h"
#include "common/isa_dispatch.h"
#include "common/cpu_ops.h"
#include "common/op_utils.h"
#include "pwconv_bn_act/pwconv_bn_act.h"

namespace mbv3 {
namespace {

constexpr int64_t kWindowBytes = 192 * 1024;  // expanded rows held per thread: well inside L2

struct ExpandShape {
  int64_t Ce;
  DwShape dw;
};

// The op's argument checks (metadata only), for every device: the CPU op, its fake kernel and the
// CUDA path (through mbv3::_check_expand_dwconv_bn_act).
ExpandShape check_expand(const at::Tensor& x, const at::Tensor& ew, const at::Tensor& eb, const at::Tensor& dw,
                         const at::Tensor& db, int64_t stride, int64_t padding, int64_t dilation) {
  constexpr const char* op = "expand_dwconv_bn_act";
  check_x(x, op, "N, Cin, H, W");
  check_param(x, ew, "expand_weight");
  check_param(x, eb, "expand_bias");
  const int64_t Ce = check_pw_weight(x, ew, eb, op, "expand_weight", "expand_bias", "Ce");
  TORCH_CHECK_VALUE(Ce >= 1, op, ": expand_weight must have at least one output channel, got ", ew.sizes());
  return {Ce, check_depthwise(op, "Ce", "expand_weight's rows", x, Ce, dw, db, stride, padding, dilation)};
}

// [Ce, OH, OW]
std::vector<int64_t> check_expand_op(const at::Tensor& x, const at::Tensor& ew, const at::Tensor& eb,
                                     c10::string_view expand_activation, const at::Tensor& dw,
                                     const at::Tensor& db, int64_t stride, int64_t padding, int64_t dilation,
                                     c10::string_view activation) {
  const ExpandShape g = check_expand(x, ew, eb, dw, db, stride, padding, dilation);
  parse_activation(expand_activation, "expand_dwconv_bn_act");
  parse_activation(activation, "expand_dwconv_bn_act");
  return {g.Ce, g.dw.OH, g.dw.OW};
}

// The bands (see the file comment); pe / pd are the expand and depthwise arguments without
// their per-band pointers.  With `project` (its x unused): each band's depthwise rows go to a
// per-thread buffer and the project conv runs on them there, writing project->y.
template <class T>
void run_expand_dwconv(const PwConvArgs<T>& pe, const DwConvArgs<T>& pd, const T* xp, int64_t span,
                       const PwConvArgs<T>* project = nullptr) {
  const Isa isa = current_isa();
  auto* expand = pwconv_kernel(isa, pe);
  auto* depthwise = MBV3_ISA_SELECT_AS(DwConvFn<T>, dwconv_bn_act, isa);
  auto* pointwise = project ? pwconv_kernel(isa, *project) : nullptr;
  const int64_t N = pd.N, Cin = pe.K, H = pd.H, W = pd.W, Ce = pd.C, OH = pd.OH, OW = pd.OW,
                stride = pd.stride, padding = pd.pad;

  // Band of output rows whose input window fits kWindowBytes (at least one row).
  const int64_t row_bytes = W * Ce * int64_t(sizeof(T));
  const int64_t band = std::max<int64_t>(1, (kWindowBytes / row_bytes - span) / stride + 1);
  const int64_t window_rows = std::min(H, (band - 1) * stride + span);
  // Threads take contiguous runs of output rows; a run shorter than a band would recompute
  // more overlap than it saves.
  const int64_t rows = N * OH;
  const int64_t grain = std::max<int64_t>(band, rows / std::max<int64_t>(1, num_threads()) / 2);
  parallel_for(0, rows, std::min(rows, grain), [&](int64_t begin, int64_t end) {
    thread_local std::vector<T> window, out_band;
    if (window.size() < size_t(window_rows * W * Ce)) window.resize(size_t(window_rows * W * Ce));
    if (project && out_band.size() < size_t(band * OW * Ce)) out_band.resize(size_t(band * OW * Ce));
    T* win = window.data();
    PwConvArgs<T> e = pe;  // per thread: its x / y / M change per band
    int64_t win_n = -1, win_lo = 0, win_hi = 0;  // the window holds input rows [win_lo, win_hi) of sample win_n
    for (int64_t r = begin; r < end;) {
      const int64_t n = r / OH, oh0 = r % OH, oh1 = std::min(OH, oh0 + std::min(band, end - r));
      // Input rows the band's taps touch (clipped to the image; the rest is padding).
      const int64_t lo = std::min(H, std::max<int64_t>(0, oh0 * stride - padding));
      const int64_t hi = std::max(lo, std::min(H, (oh1 - 1) * stride - padding + span));
      int64_t have = lo;  // rows [lo, have) are at the window's front after the move below
      if (n == win_n && lo >= win_lo && lo < win_hi) {
        have = std::min(hi, win_hi);
        std::memmove(win, win + (lo - win_lo) * W * Ce, size_t((have - lo) * W * Ce) * sizeof(T));
      }
      if (hi > have) {
        e.x = xp + (n * H + have) * W * Cin;
        e.y = win + (have - lo) * W * Ce;
        e.M = (hi - have) * W;
        expand(e, 0, e.M, 0, Ce);
      }
      win_n = n, win_lo = lo, win_hi = hi;
      // The depthwise kernel addresses input row (n, ih) at x + ((n * H + ih) * W) * C; it
      // reads only rows [lo, hi) for these output rows, which the window holds.
      DwConvArgs<T> p = pd;
      p.x = win - (n * H + lo) * W * Ce;
      if (!project) {
        depthwise(p, n * OH + oh0, n * OH + oh1, 0, Ce);
      } else {
        // Output pixels [m0, m1): the kernels address pixel m at y + m * Ce and x + m * K,
        // here the band buffer's row m - m0.
        const int64_t m0 = (n * OH + oh0) * OW, m1 = (n * OH + oh1) * OW;
        p.y = out_band.data() - m0 * Ce;
        depthwise(p, n * OH + oh0, n * OH + oh1, 0, Ce);
        PwConvArgs<T> q = *project;
        q.x = p.y;
        pointwise(q, m0, m1, 0, q.Cout);
      }
      r = n * OH + oh1;
    }
  });
}

// The block's project conv, for expand_dwconv_project_cpu.
struct Project {
  const at::Tensor& w;
  const at::Tensor& b;
  Act act;
  bool residual;  // + x
};

// expand_dwconv_bn_act (project null), or with the project run on each band: checks, layout,
// arguments, then the bands.
at::Tensor expand_dwconv(const at::Tensor& x, const at::Tensor& ew, const at::Tensor& eb, Act eact,
                         const at::Tensor& dw, const at::Tensor& db, int64_t stride, int64_t padding,
                         int64_t dilation, Act act, const Project* project) {
  check_cpu_x_dtype(x);
  const ExpandShape g = check_expand(x, ew, eb, dw, db, stride, padding, dilation);
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3), Ce = g.Ce;
  const int64_t k = g.dw.k, OH = g.dw.OH, OW = g.dw.OW, span = dilation * (k - 1) + 1;
  int64_t C = Ce;  // the output's channels
  if (project) {  // pwconv_bn_act's checks, on its x (Ce channels, x's dtype and device)
    constexpr const char* op = "expand_dwconv_project";
    check_param(x, project->w, "project weight");
    check_param(x, project->b, "project bias");
    C = check_pw_weight(x, Ce, project->w, project->b, op, "project weight", "project bias");
    TORCH_CHECK_VALUE(!project->residual || (C == Cin && OH == H && OW == W), op, ": a residual needs the "
                      "block's output shape [", N, ", ", C, ", ", OH, ", ", OW, "] to equal x's ", x.sizes());
    check_cpu_streamed(x, project->w, "project weight");
  }

  check_cpu_streamed(x, ew, "expand_weight");
  check_cpu_streamed(x, dw, "weight");
  NhwcOutput out(x, {N, C, OH, OW});
  if (N == 0 || C == 0) return out.result();
  const at::Tensor xn = x.contiguous(at::MemoryFormat::ChannelsLast);
  with_cpu_dtype(x, [&](auto t) {
    using T = decltype(t);
    at::Tensor ew_storage, eb_storage, dw_storage, db_storage, pw_storage, pb_storage;
    const T* dwp = taps_by_channel<T>(dw, dw_storage);
    const bool k_pairs = isa_has_k_pairs(current_isa());
    PwConvArgs<T> pe{nullptr, nullptr, dense_1d(eb, eb_storage), nullptr, nullptr, nullptr, 0, Cin, Ce, H * W, 0, eact};
    pw_weight_args(ew, Ce, Cin, k_pairs, ew_storage, pe);
    const DwConvArgs<T> pd{nullptr, dwp, dense_1d(db, db_storage), project ? nullptr : out.data<T>(),
                           N, Ce, H, W, OH, OW, int(k), int(stride), int(padding), int(dilation), act,
                           all_finite(dwp, k * k * Ce)};
    if (!project) return run_expand_dwconv(pe, pd, data_as<T>(xn), span);
    PwConvArgs<T> pp{nullptr, nullptr, dense_1d(project->b, pb_storage), nullptr,
                     project->residual ? data_as<T>(xn) : nullptr, out.data<T>(), N * OH * OW, Ce, C, OH * OW, 0,
                     project->act};
    pw_weight_args(project->w, C, Ce, k_pairs, pw_storage, pp);
    run_expand_dwconv(pe, pd, data_as<T>(xn), span, &pp);
  });
  return out.result();
}

}  // namespace

at::Tensor expand_dwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& ew, const at::Tensor& eb,
                                    c10::string_view expand_activation, const at::Tensor& dw,
                                    const at::Tensor& db, int64_t stride, int64_t padding,
                                    int64_t dilation, c10::string_view activation) {
  return expand_dwconv_bn_act_cpu(x, ew, eb, parse_activation(expand_activation, "expand_dwconv_bn_act"), dw,
                                  db, stride, padding, dilation,
                                  parse_activation(activation, "expand_dwconv_bn_act"));
}

at::Tensor expand_dwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& ew, const at::Tensor& eb, Act eact,
                                    const at::Tensor& dw, const at::Tensor& db, int64_t stride,
                                    int64_t padding, int64_t dilation, Act act) {
  return expand_dwconv(x, ew, eb, eact, dw, db, stride, padding, dilation, act, nullptr);
}

at::Tensor expand_dwconv_project_cpu(const at::Tensor& x, const at::Tensor& ew, const at::Tensor& eb, Act eact,
                                     const at::Tensor& dw, const at::Tensor& db, int64_t stride, int64_t padding,
                                     int64_t dilation, Act act, const at::Tensor& pw, const at::Tensor& pb,
                                     Act pact, bool residual) {
  const Project project{pw, pb, pact, residual};
  return expand_dwconv(x, ew, eb, eact, dw, db, stride, padding, dilation, act, &project);
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("expand_dwconv_bn_act(Tensor x, Tensor expand_weight, Tensor expand_bias, str expand_activation, "
        "Tensor weight, Tensor bias, int stride, int padding, int dilation, str activation) -> Tensor");
  // The argument checks alone, on any device (fake and CUDA paths): [Ce, OH, OW].
  m.def("_check_expand_dwconv_bn_act(Tensor x, Tensor expand_weight, Tensor expand_bias, "
        "str expand_activation, Tensor weight, Tensor bias, int stride, int padding, int dilation, "
        "str activation) -> int[]",
        &mbv3::check_expand_op);
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) {
  using Fn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view,
                            const at::Tensor&, const at::Tensor&, int64_t, int64_t, int64_t, c10::string_view);
  m.impl("expand_dwconv_bn_act", static_cast<Fn>(&mbv3::expand_dwconv_bn_act_cpu));
}
