// torch binding of mbv3::conv_bn_act: schema, input checks, weight packing, threading, ISA choice.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "conv_bn_act.h"
#include "common/isa_dispatch.h"
#include "common/cpu_ops.h"
#include "common/op_utils.h"

namespace mbv3 {
namespace {

// [Cout, Cin, k, k] weight as [k][k][Cin][Cout] (output channels contiguous).  Free when the
// weight already is a view of such a buffer (mbv3_fast.ops.conv_bn_act.pack_weight, which the
// model keeps); otherwise packed into `storage` on every call.  T: the weight's element type.
template <class T>
const T* taps_cin_cout(const at::Tensor& w, at::Tensor& storage) {
  const int64_t Cout = w.size(0), Cin = w.size(1), k = w.size(2);
  const bool packed = (Cout == 1 || w.stride(0) == 1) && (Cin == 1 || w.stride(1) == Cout) &&
                      (k == 1 || (w.stride(3) == Cin * Cout && w.stride(2) == k * Cin * Cout));
  if (packed) return data_as<T>(w);
  storage = w.permute({2, 3, 1, 0}).contiguous();
  return data_as<T>(storage);
}

struct ConvShape {
  int64_t Cout, k, OH, OW;
};

// The op's argument checks (metadata only), for every device: the CPU op, its fake kernel and the
// CUDA path (through mbv3::_check_conv_bn_act).
ConvShape check_conv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t stride,
                     int64_t padding) {
  check_x(x, "conv_bn_act", "N, Cin, H, W");
  const int64_t Cin = x.size(1), H = x.size(2), W = x.size(3);
  check_param(x, weight, "weight");
  check_param(x, bias, "bias");
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(1) == Cin && weight.size(2) == weight.size(3),
                    "conv_bn_act: weight must be [Cout, Cin, k, k] with Cin = ", Cin,
                    " (x's channels), got ", weight.sizes());
  const int64_t Cout = weight.size(0), k = weight.size(2);
  TORCH_CHECK_VALUE(k % 2 == 1 && k <= 7, "conv_bn_act: kernel size must be odd and <= 7, got ", k);
  TORCH_CHECK_VALUE(bias.dim() == 1 && bias.size(0) == Cout, "conv_bn_act: bias must be [Cout] with Cout = ",
                    Cout, ", got ", bias.sizes());
  check_int_arg("conv_bn_act", "stride", stride, 1);
  check_int_arg("conv_bn_act", "padding", padding, 0);
  TORCH_CHECK_VALUE(H >= 1 && W >= 1, "conv_bn_act: H and W must be >= 1, got ", H, "x", W);
  TORCH_CHECK_VALUE(H + 2 * padding >= k && W + 2 * padding >= k, "conv_bn_act: input ", H, "x", W,
                    " with padding ", padding, " is smaller than the kernel ", k);
  return {Cout, k, conv_out_size(H, padding, k, stride), conv_out_size(W, padding, k, stride)};
}

// [Cout, k, OH, OW, activation code]
std::vector<int64_t> check_conv_op(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                   int64_t stride, int64_t padding, c10::string_view activation) {
  const ConvShape g = check_conv(x, weight, bias, stride, padding);
  return {g.Cout, g.k, g.OH, g.OW, int64_t(parse_activation(activation, "conv_bn_act"))};
}

}  // namespace

at::Tensor conv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           int64_t stride, int64_t padding, c10::string_view activation) {
  return conv_bn_act_cpu(x, weight, bias, stride, padding, parse_activation(activation, "conv_bn_act"));
}

at::Tensor conv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           int64_t stride, int64_t padding, Act act) {
  check_cpu_x_dtype(x);
  const ConvShape g = check_conv(x, weight, bias, stride, padding);
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Cout = g.Cout, k = g.k, OH = g.OH, OW = g.OW;
  // The kernel streams the weight in x's element type; the bias is read as float32 either way.
  check_cpu_streamed(x, weight, "weight");

  // Always channels_last (the stem feeds NHWC ops), whatever x's layout.
  at::Tensor y = op_empty({N, Cout, OH, OW}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (debug_poison_outputs()) y.fill_(std::numeric_limits<float>::quiet_NaN());
  if (N == 0 || Cout == 0) return y;
  // Work unit: one output row (all channels).  The grain keeps tiny problems on one thread
  // (a wake-up costs µs); each output is computed the same way whatever the split.
  const int64_t rows = N * OH;
  const int64_t row_macs = OW * Cout * Cin * k * k;
  const int64_t grain = parallel_grain(row_macs, 32768);
  with_cpu_dtype(x, [&](auto t) {
    using T = decltype(t);
    at::Tensor w_storage, b_storage;
    // x is read in place through its strides: no layout copy.
    const ConvArgs<T> p{data_as<T>(x), taps_cin_cout<T>(weight, w_storage), dense_1d(bias, b_storage),
                        data_as<T>(y), N, Cin, H, W, x.stride(0), x.stride(1), x.stride(2), x.stride(3),
                        Cout, OH, OW, int(k), int(stride), int(padding), act};
    // neon_bf16 has a unit of its own for bf16 only (BFDOT); float32 runs neon's.
    auto* kernel = [] {
      if constexpr (std::is_same_v<T, bf16>)
        return MBV3_ISA_SELECT_NEON_BF16_AS(ConvFn<T>, conv_bn_act, current_isa());
      else
        return MBV3_ISA_SELECT_AS(ConvFn<T>, conv_bn_act, current_isa());
    }();
    parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { kernel(p, begin, end); });
  });
  return y;
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("conv_bn_act(Tensor x, Tensor weight, Tensor bias, int stride, int padding, str activation) "
        "-> Tensor");
  // The argument checks alone, on any device (fake and CUDA paths): [Cout, k, OH, OW, activation code].
  m.def("_check_conv_bn_act(Tensor x, Tensor weight, Tensor bias, int stride, int padding, str activation) "
        "-> int[]",
        &mbv3::check_conv_op);
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) {
  using Fn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                            c10::string_view);
  m.impl("conv_bn_act", static_cast<Fn>(&mbv3::conv_bn_act_cpu));
}
