// Helpers every torch binding shares: argument checks and the NHWC output buffer.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <string>

#include "activation.h"
#include "fc_matrix.h"

namespace mbv3 {

// Test hook (torch.ops.mbv3._debug_poison_outputs): fill every output buffer with NaN before
// the kernel runs, so a test can prove each element is written.
bool debug_poison_outputs();

// dtypes, one rule for every device (the fake kernels, the Triton kernels and the CPU op check
// through the same functions): x is float32, float16 or bfloat16, every parameter float32 or
// x's dtype.  The CPU kernels take float32 x only (check_cpu_x_dtype, in their entry points), and
// so float32 parameters; the Triton interpreter runs the half types on CPU tensors.
inline const char* dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    default: return c10::toString(t);
  }
}

inline void check_x_dtype(const at::Tensor& x) {
  const at::ScalarType t = x.scalar_type();
  TORCH_CHECK_VALUE(t == at::kFloat || t == at::kHalf || t == at::kBFloat16,
                    "mbv3: x must be float32 or float16 or bfloat16, got ", t);
}

// What the CPU kernels take, checked first by each CPU entry point.
inline void check_cpu_x_dtype(const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.scalar_type() == at::kFloat, "mbv3: x must be float32 on the CPU, got ", x.scalar_type());
}

// A parameter next to x (x's dtype already checked).
inline void check_param_dtype(const at::Tensor& x, const at::Tensor& t, const char* name) {
  const at::ScalarType d = t.scalar_type(), xd = x.scalar_type();
  if (xd == at::kFloat) {
    TORCH_CHECK_VALUE(d == at::kFloat, "mbv3: ", name, " must be float32, got ", d);
  } else {
    TORCH_CHECK_VALUE(d == at::kFloat || d == xd, "mbv3: ", name, " must be float32 or ", dtype_name(xd),
                      ", got ", d);
  }
}

inline void check_same_device(const at::Tensor& x, const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device() == x.device(), "mbv3: ", name, " is on ", t.device(), " but x is on ",
              x.device(), "; all tensors must be on the same device");
}

// A parameter's dtype and device.
inline void check_param(const at::Tensor& x, const at::Tensor& t, const char* name) {
  check_param_dtype(x, t, name);
  check_same_device(x, t, name);
}

// x's dtype and rank; `dims` names the 4 dims in messages ("N, C, H, W").
inline void check_x(const at::Tensor& x, const char* op, const char* dims) {
  check_x_dtype(x);
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [", dims, "], got ", x.dim(), "-D");
}

inline Act parse_activation(c10::string_view a, const char* op) {
  if (a == "hardswish") return Act::Hardswish;
  if (a == "relu") return Act::Relu;
  if (a == "none") return Act::None;
  TORCH_CHECK_VALUE(false, op, ": unknown activation '", std::string(a),
                    "', expected 'hardswish', 'relu' or 'none'");
  return Act::None;  // unreachable
}

// Conv int arguments (stride, padding, dilation) are bounded so that every index computed from
// them fits the kernels' int fields and no division sees 0 (an unchecked 2**33 truncated to 0).
constexpr int64_t kMaxConvArg = int64_t(1) << 16;

inline void check_int_arg(const char* op, const char* name, int64_t v, int64_t lo) {
  TORCH_CHECK_VALUE(v >= lo, op, ": ", name, " must be >= ", lo, ", got ", v);
  TORCH_CHECK_VALUE(v <= kMaxConvArg, op, ": ", name, " must be <= ", kMaxConvArg, ", got ", v);
}

// [rows, cols] of a [rows, cols] or [rows, cols, 1, 1] weight; false for any other shape.
inline bool matrix_shape(const at::Tensor& w, int64_t& rows, int64_t& cols) {
  if (w.dim() != 2 && !(w.dim() == 4 && w.size(2) == 1 && w.size(3) == 1)) return false;
  rows = w.size(0);
  cols = w.size(1);
  return true;
}

// A conv's output size along one dim (arguments checked).
inline int64_t conv_out_size(int64_t in, int64_t padding, int64_t span, int64_t stride) {
  return (in + 2 * padding - span) / stride + 1;
}

// A depthwise conv's own arguments, checked (dwconv_bn_act and expand_dwconv_bn_act):
// weight [C, 1, k, k] with odd k <= 7, bias [C], stride / dilation >= 1, padding >= 0, an
// H x W input no smaller than the dilated kernel.  `c_name` / `origin` say in messages what
// C is and where it comes from.
struct DwShape {
  int64_t k, OH, OW;
};
inline DwShape check_depthwise(const char* op, const char* c_name, const char* origin, const at::Tensor& x,
                               int64_t C, const at::Tensor& weight, const at::Tensor& bias, int64_t stride,
                               int64_t padding, int64_t dilation) {
  const int64_t H = x.size(2), W = x.size(3);
  check_param(x, weight, "weight");
  check_param(x, bias, "bias");
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == 1 &&
                        weight.size(2) == weight.size(3),
                    op, ": weight must be [", c_name, ", 1, k, k] with ", c_name, " = ", C, " (", origin,
                    "), got ", weight.sizes());
  const int64_t k = weight.size(2);
  TORCH_CHECK_VALUE(k % 2 == 1 && k <= 7, op, ": kernel size must be odd and <= 7, got ", k);
  TORCH_CHECK_VALUE(bias.dim() == 1 && bias.size(0) == C, op, ": bias must be [", c_name, "] with ", c_name,
                    " = ", C, ", got ", bias.sizes());
  check_int_arg(op, "stride", stride, 1);
  check_int_arg(op, "dilation", dilation, 1);
  check_int_arg(op, "padding", padding, 0);
  TORCH_CHECK_VALUE(H >= 1 && W >= 1, op, ": H and W must be >= 1, got ", H, "x", W);
  const int64_t span = dilation * (k - 1) + 1;
  TORCH_CHECK_VALUE(H + 2 * padding >= span && W + 2 * padding >= span, op, ": input ", H, "x", W,
                    " with padding ", padding, " is smaller than the dilated kernel ", span);
  return {k, conv_out_size(H, padding, span, stride), conv_out_size(W, padding, span, stride)};
}

// Threads: split a loop of units so that each thread's task is at least `min_task` units of
// work (MACs or elements): waking a pool thread costs µs, so tiny loops stay on the caller.
inline int64_t parallel_grain(int64_t work_per_unit, int64_t min_task) {
  return std::max<int64_t>(1, min_task / std::max<int64_t>(1, work_per_unit));
}

// The one FC work split (SE's two FCs, the head's two): units are blocks of up to `nb` samples
// (each weight row read once per block) x slices of the `outs` outputs, i.e. of the [outs, ins]
// weight's rows, so a unit streams one contiguous run of weights.  Slices (a power of two, at
// most `max_slices`, starting at multiples of 16 = one AVX-512 vector) are added while there
// are fewer units than 2 x threads and each keeps at least `min_slice_macs` multiply-adds.
// Every output is one unit's whole dot product, so the result never depends on the split.
// body(n0, count, o_begin, o_end).
template <class F>
void parallel_fc(int64_t N, int64_t nb, int64_t outs, int64_t ins, int64_t min_slice_macs, int64_t max_slices,
                 int64_t min_task_macs, F&& body) {
  constexpr int64_t kAlign = 16;
  if (N <= 0 || nb <= 0) return;
  const int64_t blocks = (N + nb - 1) / nb, aligned = (outs + kAlign - 1) / kAlign;
  const int64_t threads = at::get_num_threads();
  int64_t slices = 1;
  while (blocks * slices < 2 * threads && slices * 2 <= std::min(max_slices, aligned) &&
         outs * ins * nb / (slices * 2) >= min_slice_macs)
    slices *= 2;
  auto begin = [&](int64_t k) { return std::min(outs, k * aligned / slices * kAlign); };
  at::parallel_for(0, blocks * slices, parallel_grain(outs * ins * nb / slices, min_task_macs),
                   [&](int64_t b, int64_t e) {
                     for (int64_t u = b; u < e; ++u) {
                       const int64_t n0 = u / slices * nb, k = u % slices;
                       body(n0, std::min(nb, N - n0), begin(k), begin(k + 1));
                     }
                   });
}

// The output-layout rule of every op but conv_bn_act (mbv3_fast/ops/_layout.py is its Python
// copy for the fake kernels): channels_last when x is channels_last-dense and not also
// NCHW-dense, NCHW otherwise.  Ops that read x in place read it NHWC exactly then.
inline bool wants_channels_last(const at::Tensor& x) {
  return x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
}

// The op's output in x's layout (wants_channels_last).  Kernels always write NHWC; an NCHW
// result is filled from an NHWC scratch by one copy.
class NhwcOutput {
 public:
  NhwcOutput(const at::Tensor& x, at::IntArrayRef shape) {
    result_ = at::empty(shape, x.options().memory_format(wants_channels_last(x) ? at::MemoryFormat::ChannelsLast
                                                            : at::MemoryFormat::Contiguous));
    work_ = result_.is_contiguous(at::MemoryFormat::ChannelsLast)
                ? result_
                : at::empty(shape, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    if (debug_poison_outputs()) work_.fill_(std::numeric_limits<float>::quiet_NaN());
  }
  float* data() { return work_.data_ptr<float>(); }
  at::Tensor result() {
    if (!work_.is_same(result_)) result_.copy_(work_);
    return result_;
  }

 private:
  at::Tensor result_, work_;
};

// [C, 1, k, k] depthwise weight as [k*k][C] (taps major, channels contiguous).  Free when the
// weight already is a view of such a buffer (the model keeps its folded weights that way);
// otherwise packed into `storage`.
inline const float* taps_by_channel(const at::Tensor& w, at::Tensor& storage) {
  const int64_t C = w.size(0), k = w.size(2);
  if ((C == 1 || w.stride(0) == 1) && (k == 1 || (w.stride(3) == C && w.stride(2) == k * C)))
    return w.data_ptr<float>();
  storage = w.permute({2, 3, 1, 0}).contiguous();
  return storage.data_ptr<float>();
}

// A [Cout, Cin(, 1, 1)] 1x1-conv weight as K-major w[k * ldw + n] = weight[n, k] (the
// pointwise GEMM's layout).  Free when the weight is a view of a [Cin, Cout] buffer
// (stride(0) == 1: the layout the model keeps); packed into `storage` else.
inline const float* weight_k_major(const at::Tensor& w, int64_t Cout, int64_t Cin,
                                   at::Tensor& storage, int64_t& ldw) {
  if (Cout == 1 || w.stride(0) == 1) {
    ldw = Cin == 1 ? Cout : w.stride(1);
    return w.data_ptr<float>();
  }
  storage = w.reshape({Cout, Cin}).t().contiguous();
  ldw = Cout;
  return storage.data_ptr<float>();
}

// A [rows, cols] or [rows, cols, 1, 1] FC weight (SE, classifier head), read in place when
// one of its two dims is unit-stride; otherwise packed row-major into `holder` (a strided
// slice of a bigger buffer, say).
inline FcMatrix fc_matrix(const at::Tensor& w, at::Tensor& holder) {
  const int64_t rows = w.size(0), cols = w.size(1), s_row = w.stride(0), s_col = w.stride(1);
  const float* base = w.data_ptr<float>();
  if (s_col == 1 || cols == 1) return {base, s_row, false};
  if (s_row == 1 || rows == 1) return {base, s_col, true};
  holder = w.reshape({rows, cols}).contiguous();
  return {holder.data_ptr<float>(), cols, false};
}

// A 1-D float tensor's data, copied only when it is strided.
inline const float* dense_1d(const at::Tensor& t, at::Tensor& storage) {
  if (t.size(0) <= 1 || t.stride(0) == 1) return t.data_ptr<float>();
  storage = t.contiguous();
  return storage.data_ptr<float>();
}

}  // namespace mbv3
