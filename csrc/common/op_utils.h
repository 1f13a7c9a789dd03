// Helpers every torch binding shares: argument checks and the NHWC output buffer.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <string>
#include <type_traits>

#include "activation.h"
#include "bf16.h"
#include "fc_matrix.h"
#include "parallel.h"
#include "workspace.h"

namespace mbv3 {

// Test hook (torch.ops.mbv3._debug_poison_outputs): fill every output buffer with NaN before
// the kernel runs, so a test can prove each element is written.
bool debug_poison_outputs();

// dtypes, one rule for every device (the fake kernels, the Triton kernels and the CPU op check
// through the same functions): x is float32, float16 or bfloat16, every parameter float32 or
// x's dtype.  The CPU kernels take float32 or bfloat16 x (check_cpu_x_dtype, in their entry
// points); with bfloat16 x the tensors they stream (weights, residual) must be bfloat16 too
// (check_cpu_streamed), while biases and scales may be either (read as float32).  The Triton
// interpreter runs float16 on CPU tensors.
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
  TORCH_CHECK_VALUE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
                    "mbv3: x must be float32 or bfloat16 on the CPU, got ", x.scalar_type());
}

// A tensor a CPU kernel streams in x's element type (weights, residual): x's dtype exactly.
inline void check_cpu_streamed(const at::Tensor& x, const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.scalar_type() == x.scalar_type(), "mbv3: on the CPU, ", name, " must have x's dtype (",
                    dtype_name(x.scalar_type()), "), got ", dtype_name(t.scalar_type()));
}

// Calls f(T{}) with T the kernels' element type for x: float or bf16 (check_cpu_x_dtype first).
template <class F>
decltype(auto) with_cpu_dtype(const at::Tensor& x, F&& f) {
  if (x.scalar_type() == at::kBFloat16) return f(bf16{});
  return f(float{});
}

// A tensor's data as the kernels' element type (float32 data as float, bfloat16 as bf16).
template <class T>
inline T* data_as(const at::Tensor& t) {
  if constexpr (std::is_same_v<T, bf16>) {
    static_assert(sizeof(at::BFloat16) == sizeof(bf16), "the same two bytes");
    return reinterpret_cast<bf16*>(t.data_ptr<at::BFloat16>());
  } else {
    return t.data_ptr<float>();
  }
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

// The output count of an FC weight packed in panels (3-D), whose padded last panel does not
// give it: its bias's length, checked to be a 1-D [out] with out >= 1.
inline int64_t fc_panel_outputs(const at::Tensor& b, const char* op, const char* bname, const char* out_name) {
  TORCH_CHECK_VALUE(b.dim() == 1 && b.size(0) >= 1, op, ": ", bname, " must be [", out_name, "] with ", out_name,
                    " >= 1, got ", b.sizes());
  return b.size(0);
}

// An FC weight (SE, classifier head) packed in panels of P outputs, which only the CPU reads: a
// contiguous [ceil(out / P), in, P] in x's dtype (mbv3_fast.ops.pack_pw_weight_panels: a 1x1
// weight's panel layout), `out` from fc_panel_outputs.  False when w is not 3-D (a plain
// layout, for the caller to check).
inline bool check_fc_panels(const at::Tensor& x, const at::Tensor& w, int64_t out, int64_t in, const char* op,
                            const char* wname, const char* out_name, const char* in_name) {
  if (w.dim() != 3) return false;
  TORCH_CHECK_VALUE(x.is_cpu(), op, ": ", wname, " packed in panels (3-D) is read on the CPU only, got x on ",
                    x.device());
  TORCH_CHECK_VALUE(w.scalar_type() == x.scalar_type(), op, ": ", wname, " packed in panels must have x's dtype (",
                    dtype_name(x.scalar_type()), "), got ", dtype_name(w.scalar_type()));
  const int64_t P = w.size(2);
  TORCH_CHECK_VALUE(P >= 1 && w.size(0) == (out + P - 1) / P && w.size(1) == in && w.is_contiguous(), op, ": a ",
                    wname, " packed in panels of P outputs must be a contiguous [ceil(", out_name, " / P), ",
                    in_name, ", P] with P >= 1 (", in_name, " = ", in, ", ", out_name, " = ", out, "), got ",
                    w.sizes(), w.is_contiguous() ? "" : " (not contiguous)");
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
// The geometry alone (shared with the int8 q8_dwconv_act, whose weight and bias differ).
inline DwShape check_depthwise_geometry(const char* op, int64_t H, int64_t W, int64_t k, int64_t stride,
                                        int64_t padding, int64_t dilation) {
  check_int_arg(op, "stride", stride, 1);
  check_int_arg(op, "dilation", dilation, 1);
  check_int_arg(op, "padding", padding, 0);
  TORCH_CHECK_VALUE(H >= 1 && W >= 1, op, ": H and W must be >= 1, got ", H, "x", W);
  const int64_t span = dilation * (k - 1) + 1;
  TORCH_CHECK_VALUE(H + 2 * padding >= span && W + 2 * padding >= span, op, ": input ", H, "x", W,
                    " with padding ", padding, " is smaller than the dilated kernel ", span);
  return {k, conv_out_size(H, padding, span, stride), conv_out_size(W, padding, span, stride)};
}
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
  return check_depthwise_geometry(op, H, W, k, stride, padding, dilation);
}

// Threads: split a loop of units so that each thread's task is at least `min_task` units of
// work (MACs or elements): waking a pool thread costs µs, so tiny loops stay on the caller.
inline int64_t parallel_grain(int64_t work_per_unit, int64_t min_task) {
  return std::max<int64_t>(1, min_task / std::max<int64_t>(1, work_per_unit));
}

// The one FC work split (SE's two FCs, the head's two): units are blocks of up to `nb` samples
// (each weight row read once per block) x slices of the `outs` outputs, i.e. of the [outs, ins]
// weight's rows, so a unit streams one contiguous run of weights.  Slices (a power of two, at
// most `max_slices`, starting at multiples of 16 = one AVX-512 vector, or of the weight's
// panel width when it has panels: a unit then streams whole panels) are added while there
// are fewer units than 2 x threads and each keeps at least `min_slice_macs` multiply-adds.
// Every output is one unit's whole dot product, so the result never depends on the split.
// body(n0, count, o_begin, o_end).
template <class F>
void parallel_fc(int64_t N, int64_t nb, int64_t outs, int64_t ins, int64_t panel, int64_t min_slice_macs,
                 int64_t max_slices, int64_t min_task_macs, F&& body) {
  const int64_t align = panel > 0 ? panel : 16;  // slice starts are multiples of this
  if (N <= 0 || nb <= 0) return;
  const int64_t blocks = (N + nb - 1) / nb, aligned = (outs + align - 1) / align;
  const int64_t threads = num_threads();
  int64_t slices = 1;
  while (blocks * slices < 2 * threads && slices * 2 <= std::min(max_slices, aligned) &&
         outs * ins * nb / (slices * 2) >= min_slice_macs)
    slices *= 2;
  auto begin = [&](int64_t k) { return std::min(outs, k * aligned / slices * align); };
  parallel_for(0, blocks * slices, parallel_grain(outs * ins * nb / slices, min_task_macs),
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
    result_ = op_empty(shape, x.options().memory_format(wants_channels_last(x) ? at::MemoryFormat::ChannelsLast
                                                           : at::MemoryFormat::Contiguous));
    work_ = result_.is_contiguous(at::MemoryFormat::ChannelsLast)
                ? result_
                : op_empty(shape, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    if (debug_poison_outputs()) work_.fill_(std::numeric_limits<float>::quiet_NaN());
  }
  template <class T = float>
  T* data() { return data_as<T>(work_); }
  at::Tensor result() {
    if (!work_.is_same(result_)) result_.copy_(work_);
    return result_;
  }

 private:
  at::Tensor result_, work_;
};

// A 1x1 conv's weight (pwconv_bn_act, expand_dwconv_bn_act): [Cout, Cin(, 1, 1)]; or, on the
// CPU only, with Cout then the bias's length: bf16 packed in K pairs ([ceil(Cin / 2), Cout
// rounded up to 16, 2], contiguous: mbv3_fast.ops.pack_weight_k_pairs), or float32 packed in
// panels ([ceil(Cout / P), Cin, P], contiguous: mbv3_fast.ops.pack_pw_weight_panels).  Checks
// the shape against Cin (x's channels, unless the caller gives the count of the tensor the conv
// reads: the depthwise output of expand_dwconv_project) and the bias; returns Cout.
inline int64_t check_pw_weight(const at::Tensor& x, int64_t Cin, const at::Tensor& w, const at::Tensor& b,
                               const char* op, const char* wname, const char* bname, const char* cname = "Cout") {
  int64_t Cout = 0, wcin = 0;
  const bool cpu_packed = w.dim() == 3 && x.is_cpu() &&
                          (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16);
  if (cpu_packed) {
    check_cpu_streamed(x, w, wname);  // bf16: K pairs; float32: panels
    TORCH_CHECK_VALUE(b.dim() == 1, op, ": ", bname, " must be 1-D [", cname, "], got ", b.sizes());
    Cout = b.size(0);
    if (x.scalar_type() == at::kBFloat16) {
      const int64_t cols = (Cout + 15) / 16 * 16;
      TORCH_CHECK_VALUE(w.size(0) == (Cin + 1) / 2 && w.size(1) == cols && w.size(2) == 2 && w.is_contiguous(),
                        op, ": a ", wname, " packed in K pairs must be a contiguous [ceil(Cin / 2), Cout rounded "
                        "up to 16, 2] = [", (Cin + 1) / 2, ", ", cols, ", 2] (Cin = ", Cin, ", ", cname, " = ", Cout,
                        " from ", bname, "), got ", w.sizes(), w.is_contiguous() ? "" : " (not contiguous)");
    } else {
      const int64_t P = w.size(2);
      TORCH_CHECK_VALUE(P >= 1 && w.size(0) == (Cout + P - 1) / P && w.size(1) == Cin && w.is_contiguous(), op,
                        ": a ", wname, " packed in panels of P columns must be a contiguous [ceil(", cname,
                        " / P), Cin, P] with P >= 1 (Cin = ", Cin, ", ", cname, " = ", Cout, " from ", bname,
                        "), got ", w.sizes(), w.is_contiguous() ? "" : " (not contiguous)");
    }
    return Cout;
  }
  TORCH_CHECK_VALUE(matrix_shape(w, Cout, wcin) && wcin == Cin, op, ": ", wname,
                    " must be [", cname, ", Cin, 1, 1] or [", cname, ", Cin] with Cin = ", Cin, " (its input's channels), got ",
                    w.sizes(), w.dim() == 3 ? " (3-D: packed in K pairs or panels, which only the CPU takes, in "
                    "bfloat16 and float32)" : "");
  TORCH_CHECK_VALUE(b.dim() == 1 && b.size(0) == Cout, op, ": ", bname, " must be [", cname, "] with ", cname, " = ", Cout,
                    ", got ", b.sizes());
  return Cout;
}
inline int64_t check_pw_weight(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, const char* op,
                               const char* wname, const char* bname, const char* cname = "Cout") {
  return check_pw_weight(x, x.size(1), w, b, op, wname, bname, cname);
}

// [C, 1, k, k] depthwise weight as [k*k][C] (taps major, channels contiguous).  Free when the
// weight already is a view of such a buffer (the model keeps its folded weights that way);
// otherwise packed into `storage`.
template <class T>
inline const T* taps_by_channel(const at::Tensor& w, at::Tensor& storage) {
  const int64_t C = w.size(0), k = w.size(2);
  if ((C == 1 || w.stride(0) == 1) && (k == 1 || (w.stride(3) == C && w.stride(2) == k * C)))
    return data_as<T>(w);
  storage = w.permute({2, 3, 1, 0}).contiguous();
  return data_as<T>(storage);
}

// A [Cout, Cin(, 1, 1)] 1x1-conv weight as K-major w[k * ldw + n] = weight[n, k] (the
// pointwise GEMM's layout).  Free when the weight is a view of a [Cin, Cout] buffer
// (stride(0) == 1: the layout the model keeps); packed into `storage` else.
template <class T>
inline const T* weight_k_major(const at::Tensor& w, int64_t Cout, int64_t Cin, at::Tensor& storage,
                               int64_t& ldw) {
  if (Cout == 1 || w.stride(0) == 1) {
    ldw = Cin == 1 ? Cout : w.stride(1);
    return data_as<T>(w);
  }
  storage = w.reshape({Cout, Cin}).t().contiguous();
  ldw = Cout;
  return data_as<T>(storage);
}

// A 1x1 weight (checked by check_pw_weight) for the pointwise kernels: sets p.w, p.ldw,
// p.k_pairs and p.panel.  Panels (float32) are read in place by every ISA.  A K-pair weight is
// read in place when `k_pairs` (the ISA has the dot-product kernel); otherwise it is unpacked
// to K-major into `storage` (a copy per call: the model packs in K pairs only for an ISA that
// reads them).
template <class P>
inline void pw_weight_args(const at::Tensor& w, int64_t Cout, int64_t Cin, bool k_pairs, at::Tensor& storage,
                           P& p) {
  using T = std::remove_const_t<std::remove_pointer_t<decltype(p.w)>>;
  p.k_pairs = false;
  p.panel = 0;
  p.ldw = Cout;
  if (w.dim() == 3 && w.scalar_type() == at::kFloat) {
    p.w = data_as<T>(w);
    p.panel = w.size(2);
    return;
  }
  if (w.dim() == 3 && k_pairs) {
    p.w = data_as<T>(w);
    p.ldw = w.size(1);
    p.k_pairs = true;
    return;
  }
  if (w.dim() == 3) {
    storage = w.permute({0, 2, 1}).reshape({-1, w.size(1)}).narrow(0, 0, Cin).narrow(1, 0, Cout).contiguous();
    p.w = data_as<T>(storage);
    return;
  }
  p.w = weight_k_major<T>(w, Cout, Cin, storage, p.ldw);
}

// A [rows, cols] or [rows, cols, 1, 1] FC weight (SE, classifier head), read in place when
// one of its two dims is unit-stride; otherwise packed row-major into `holder` (a strided
// slice of a bigger buffer, say).  Panels (3-D, check_fc_panels) are read in place.
template <class T = float>
inline FcMatrixT<T> fc_matrix(const at::Tensor& w, at::Tensor& holder) {
  if (w.dim() == 3) return {data_as<T>(w), w.size(2), true, w.size(2)};  // panels (checked by the op)
  const int64_t rows = w.size(0), cols = w.size(1), s_row = w.stride(0), s_col = w.stride(1);
  const T* base = data_as<T>(w);
  if (s_col == 1 || cols == 1) return {base, s_row, false};
  if (s_row == 1 || rows == 1) return {base, s_col, true};
  holder = w.reshape({rows, cols}).contiguous();
  return {data_as<T>(holder), cols, false};
}

// A 1-D tensor's data as float32 (biases: float32 for every element type), copied only when it
// is strided or not float32.
inline const float* dense_1d(const at::Tensor& t, at::Tensor& storage) {
  if (t.scalar_type() == at::kFloat && (t.size(0) <= 1 || t.stride(0) == 1)) return t.data_ptr<float>();
  storage = t.to(at::kFloat).contiguous();
  return storage.data_ptr<float>();
}

}  // namespace mbv3
