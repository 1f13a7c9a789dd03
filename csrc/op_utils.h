// Helpers every torch binding shares: argument checks and the NHWC output buffer.
#pragma once
#include <ATen/ATen.h>

#include <limits>
#include <string>

#include "activation.h"

namespace mbv3 {

// Test hook (torch.ops.mbv3._debug_poison_outputs): fill every output buffer with NaN before
// the kernel runs, so a test can prove each element is written.
bool debug_poison_outputs();

inline void check_float_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.scalar_type() == at::kFloat, "mbv3: ", name,
                    " must be float32 on the CPU, got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& x, const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device() == x.device(), "mbv3: ", name, " is on ", t.device(), " but x is on ",
              x.device(), "; all tensors must be on the same device");
}

inline Act parse_activation(c10::string_view a, const char* op) {
  if (a == "hardswish") return Act::Hardswish;
  if (a == "relu") return Act::Relu;
  if (a == "none") return Act::None;
  TORCH_CHECK_VALUE(false, op, ": unknown activation '", std::string(a),
                    "', expected 'hardswish', 'relu' or 'none'");
  return Act::None;  // unreachable
}

// The op's output keeps the input's layout: channels_last when x is channels_last-dense (and
// not also NCHW-dense), NCHW otherwise.  Kernels always write NHWC; an NCHW result is filled
// from an NHWC scratch by one copy.
class NhwcOutput {
 public:
  NhwcOutput(const at::Tensor& x, at::IntArrayRef shape) {
    const bool cl = x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
    result_ = at::empty(shape, x.options().memory_format(cl ? at::MemoryFormat::ChannelsLast
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

// A 1-D float tensor's data, copied only when it is strided.
inline const float* dense_1d(const at::Tensor& t, at::Tensor& storage) {
  if (t.size(0) <= 1 || t.stride(0) == 1) return t.data_ptr<float>();
  storage = t.contiguous();
  return storage.data_ptr<float>();
}

}  // namespace mbv3
