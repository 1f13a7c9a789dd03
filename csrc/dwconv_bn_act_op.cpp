// torch binding of mbv3::dwconv_bn_act: schema, input checks, layout, threading, ISA choice.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "dwconv_bn_act.h"
#include "isa_dispatch.h"
#include "op_utils.h"

namespace mbv3 {
namespace {

at::Tensor dwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             int64_t stride, int64_t padding, int64_t dilation,
                             c10::string_view activation) {
  check_float_cpu(x, "x");
  TORCH_CHECK_VALUE(x.dim() == 4, "dwconv_bn_act: x must be 4-D [N, C, H, W], got ", x.dim(), "-D");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  check_float_cpu(weight, "weight");
  check_float_cpu(bias, "bias");
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == 1 &&
                        weight.size(2) == weight.size(3),
                    "dwconv_bn_act: weight must be [C, 1, k, k] with C = ", C, " (x's channels), got ",
                    weight.sizes());
  const int64_t k = weight.size(2);
  TORCH_CHECK_VALUE(k % 2 == 1 && k <= 7, "dwconv_bn_act: kernel size must be odd and <= 7, got ", k);
  TORCH_CHECK_VALUE(bias.dim() == 1 && bias.size(0) == C, "dwconv_bn_act: bias must be [C] with C = ", C,
                    ", got ", bias.sizes());
  TORCH_CHECK_VALUE(stride >= 1, "dwconv_bn_act: stride must be >= 1, got ", stride);
  TORCH_CHECK_VALUE(dilation >= 1, "dwconv_bn_act: dilation must be >= 1, got ", dilation);
  TORCH_CHECK_VALUE(padding >= 0, "dwconv_bn_act: padding must be >= 0, got ", padding);
  const Act act = parse_activation(activation, "dwconv_bn_act");
  TORCH_CHECK_VALUE(H >= 1 && W >= 1, "dwconv_bn_act: H and W must be >= 1, got ", H, "x", W);
  const int64_t OH = (H + 2 * padding - dilation * (k - 1) - 1) / stride + 1;
  const int64_t OW = (W + 2 * padding - dilation * (k - 1) - 1) / stride + 1;
  TORCH_CHECK_VALUE(H + 2 * padding >= dilation * (k - 1) + 1 && W + 2 * padding >= dilation * (k - 1) + 1,
                    "dwconv_bn_act: input ", H, "x", W, " with padding ", padding,
                    " is smaller than the dilated kernel ", dilation * (k - 1) + 1);

  NhwcOutput out(x, {N, C, OH, OW});
  if (N == 0 || C == 0) return out.result();
  const at::Tensor xn = x.is_contiguous(at::MemoryFormat::ChannelsLast)
                            ? x
                            : x.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor w_storage, b_storage;
  DwConvParams p{xn.data_ptr<float>(), taps_by_channel(weight, w_storage), dense_1d(bias, b_storage), out.data(),
                 N, C, H, W, OH, OW, int(k), int(stride), int(padding), int(dilation), act};
  auto* kernel = MBV3_ISA_SELECT(dwconv_bn_act, current_isa());

  // Work unit: one output row x one block of 64 channels; enough units for any thread count
  // at batch 1, and a grain that keeps tiny layers on one thread (waking a thread costs µs).
  constexpr int64_t kCBlock = 64;
  const int64_t cblocks = (C + kCBlock - 1) / kCBlock, units = N * OH * cblocks;
  const int64_t unit_macs = OW * std::min(C, kCBlock) * k * k;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, unit_macs));
  at::parallel_for(0, units, grain, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t row = u / cblocks, c0 = (u % cblocks) * kCBlock;
      kernel(p, row, row + 1, c0, std::min(C, c0 + kCBlock));
    }
  });
  return out.result();
}

}  // namespace
}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("dwconv_bn_act(Tensor x, Tensor weight, Tensor bias, int stride, int padding, int dilation, "
        "str activation) -> Tensor");
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) { m.impl("dwconv_bn_act", &mbv3::dwconv_bn_act_cpu); }
