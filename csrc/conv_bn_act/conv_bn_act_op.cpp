// torch binding of mbv3::conv_bn_act: schema, input checks, weight packing, threading, ISA choice.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "conv_bn_act.h"
#include "common/isa_dispatch.h"
#include "common/cpu_ops.h"
#include "common/op_utils.h"

namespace mbv3 {
namespace {

// [Cout, Cin, k, k] weight as [k][k][Cin][Cout] (output channels contiguous).  Free when the
// weight already is a view of such a buffer (mbv3_fast.ops.conv_bn_act.pack_weight, which the
// model keeps); otherwise packed into `storage` on every call.
const float* taps_cin_cout(const at::Tensor& w, at::Tensor& storage) {
  const int64_t Cout = w.size(0), Cin = w.size(1), k = w.size(2);
  const bool packed = (Cout == 1 || w.stride(0) == 1) && (Cin == 1 || w.stride(1) == Cout) &&
                      (k == 1 || (w.stride(3) == Cin * Cout && w.stride(2) == k * Cin * Cout));
  if (packed) return w.data_ptr<float>();
  storage = w.permute({2, 3, 1, 0}).contiguous();
  return storage.data_ptr<float>();
}

}  // namespace

at::Tensor conv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           int64_t stride, int64_t padding, c10::string_view activation) {
  check_float_cpu(x, "x");
  TORCH_CHECK_VALUE(x.dim() == 4, "conv_bn_act: x must be 4-D [N, Cin, H, W], got ", x.dim(), "-D");
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  check_float_cpu(weight, "weight");
  check_float_cpu(bias, "bias");
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(1) == Cin && weight.size(2) == weight.size(3),
                    "conv_bn_act: weight must be [Cout, Cin, k, k] with Cin = ", Cin,
                    " (x's channels), got ", weight.sizes());
  const int64_t Cout = weight.size(0), k = weight.size(2);
  TORCH_CHECK_VALUE(k % 2 == 1 && k <= 7, "conv_bn_act: kernel size must be odd and <= 7, got ", k);
  TORCH_CHECK_VALUE(bias.dim() == 1 && bias.size(0) == Cout, "conv_bn_act: bias must be [Cout] with Cout = ",
                    Cout, ", got ", bias.sizes());
  TORCH_CHECK_VALUE(stride >= 1, "conv_bn_act: stride must be >= 1, got ", stride);
  TORCH_CHECK_VALUE(padding >= 0, "conv_bn_act: padding must be >= 0, got ", padding);
  const Act act = parse_activation(activation, "conv_bn_act");
  check_same_device(x, weight, "weight");
  check_same_device(x, bias, "bias");
  TORCH_CHECK_VALUE(H >= 1 && W >= 1, "conv_bn_act: H and W must be >= 1, got ", H, "x", W);
  TORCH_CHECK_VALUE(H + 2 * padding >= k && W + 2 * padding >= k, "conv_bn_act: input ", H, "x", W,
                    " with padding ", padding, " is smaller than the kernel ", k);
  const int64_t OH = (H + 2 * padding - k) / stride + 1;
  const int64_t OW = (W + 2 * padding - k) / stride + 1;

  // Always channels_last (the stem feeds NHWC ops), whatever x's layout.
  at::Tensor y = at::empty({N, Cout, OH, OW}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (debug_poison_outputs()) y.fill_(std::numeric_limits<float>::quiet_NaN());
  if (N == 0 || Cout == 0) return y;
  at::Tensor w_storage, b_storage;
  // x is read in place through its strides: no layout copy.
  ConvParams p{x.data_ptr<float>(), taps_cin_cout(weight, w_storage), dense_1d(bias, b_storage),
               y.data_ptr<float>(), N, Cin, H, W, x.stride(0), x.stride(1), x.stride(2), x.stride(3),
               Cout, OH, OW, int(k), int(stride), int(padding), act};
  auto* kernel = MBV3_ISA_SELECT(conv_bn_act, current_isa());

  // Work unit: one output row (all channels).  The grain keeps tiny problems on one thread
  // (a wake-up costs µs); each output is computed the same way whatever the split.
  const int64_t rows = N * OH;
  const int64_t row_macs = OW * Cout * Cin * k * k;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_macs));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { kernel(p, begin, end); });
  return y;
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("conv_bn_act(Tensor x, Tensor weight, Tensor bias, int stride, int padding, str activation) "
        "-> Tensor");
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) { m.impl("conv_bn_act", &mbv3::conv_bn_act_cpu); }
