// torch binding of mbv3::dwconv_bn_act: schema, input checks, layout, threading, ISA choice.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "dwconv_bn_act.h"
#include "common/isa_dispatch.h"
#include "common/cpu_ops.h"
#include "common/op_utils.h"

namespace mbv3 {
namespace {

// The op's argument checks (metadata only), for every device: the CPU op, its fake kernel and the
// CUDA path (through mbv3::_check_dwconv_bn_act).
DwShape check_dwconv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t stride,
                     int64_t padding, int64_t dilation) {
  check_x(x, "dwconv_bn_act", "N, C, H, W");
  return check_depthwise("dwconv_bn_act", "C", "x's channels", x, x.size(1), weight, bias, stride, padding,
                         dilation);
}

// [k, OH, OW, activation code]
std::vector<int64_t> check_dwconv_op(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                     int64_t stride, int64_t padding, int64_t dilation,
                                     c10::string_view activation) {
  const DwShape g = check_dwconv(x, weight, bias, stride, padding, dilation);
  return {g.k, g.OH, g.OW, int64_t(parse_activation(activation, "dwconv_bn_act"))};
}

// Work unit: one output row x a block of channels.  Whole rows (all channels) when there
// are rows enough to balance the threads -- splitting C would leave ragged channel tails
// (72 = 64 + 8) and re-walk the same input lines; 64-channel blocks otherwise (the 7x7 and
// 14x14 layers at batch 1).  The grain keeps tiny layers on one thread: a wake-up costs µs.
template <class T, class Kernel>
void run_dwconv(const DwConvArgs<T>& p, Kernel* kernel) {
  const int64_t rows = p.N * p.OH, C = p.C;
  const int64_t cblock = rows >= 4 * num_threads() ? C : 64;
  const int64_t cblocks = (C + cblock - 1) / cblock, units = rows * cblocks;
  const int64_t unit_macs = p.OW * std::min(C, cblock) * p.k * p.k;
  const int64_t grain = parallel_grain(unit_macs, 16384);
  parallel_for(0, units, grain, [&](int64_t begin, int64_t end) {
    if (cblocks == 1) return kernel(p, begin, end, 0, C);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t row = u / cblocks, c0 = (u % cblocks) * cblock;
      kernel(p, row, row + 1, c0, std::min(C, c0 + cblock));
    }
  });
}

}  // namespace

at::Tensor dwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             int64_t stride, int64_t padding, int64_t dilation,
                             c10::string_view activation) {
  return dwconv_bn_act_cpu(x, weight, bias, stride, padding, dilation,
                           parse_activation(activation, "dwconv_bn_act"));
}

at::Tensor dwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             int64_t stride, int64_t padding, int64_t dilation, Act act) {
  check_cpu_x_dtype(x);
  const DwShape g = check_dwconv(x, weight, bias, stride, padding, dilation);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t k = g.k, OH = g.OH, OW = g.OW;

  check_cpu_streamed(x, weight, "weight");
  NhwcOutput out(x, {N, C, OH, OW});
  if (N == 0 || C == 0) return out.result();
  const at::Tensor xn = x.is_contiguous(at::MemoryFormat::ChannelsLast)
                            ? x
                            : x.contiguous(at::MemoryFormat::ChannelsLast);
  with_cpu_dtype(x, [&](auto t) {
    using T = decltype(t);
    at::Tensor w_storage, b_storage;
    const T* w = taps_by_channel<T>(weight, w_storage);
    const DwConvArgs<T> p{data_as<T>(xn), w, dense_1d(bias, b_storage), out.data<T>(),
                          N, C, H, W, OH, OW, int(k), int(stride), int(padding), int(dilation), act,
                          all_finite(w, k * k * C)};
    auto* kernel = MBV3_ISA_SELECT_AS(DwConvFn<T>, dwconv_bn_act, current_isa());
    run_dwconv(p, kernel);
  });
  return out.result();
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("dwconv_bn_act(Tensor x, Tensor weight, Tensor bias, int stride, int padding, int dilation, "
        "str activation) -> Tensor");
  // The argument checks alone, on any device (fake and CUDA paths): [k, OH, OW, activation code].
  m.def("_check_dwconv_bn_act(Tensor x, Tensor weight, Tensor bias, int stride, int padding, int dilation, "
        "str activation) -> int[]",
        &mbv3::check_dwconv_op);
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) {
  using Fn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t, int64_t,
                            c10::string_view);
  m.impl("dwconv_bn_act", static_cast<Fn>(&mbv3::dwconv_bn_act_cpu));
}
