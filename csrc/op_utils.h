// Helpers every torch binding shares: argument checks and the NHWC output buffer.
#pragma once
#include <ATen/ATen.h>

#include <string>

#include "activation.h"

namespace mbv3 {

inline void check_float_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.scalar_type() == at::kFloat, "mbv3: ", name, " must be float32, got ",
                    t.scalar_type());
  TORCH_CHECK(t.device().is_cpu(), "mbv3: ", name, " is on ", t.device(),
              " but the CPU kernel needs every tensor on the CPU");
}

inline Act parse_activation(c10::string_view a, const char* op) {
  if (a == "hardswish") return Act::Hardswish;
  if (a == "relu") return Act::Relu;
  if (a == "none") return Act::None;
  TORCH_CHECK_VALUE(false, op, ": unknown activation '", std::string(a),
                    "', expected 'hardswish', 'relu' or 'none'");
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
  }
  float* data() { return work_.data_ptr<float>(); }
  at::Tensor result() {
    if (!work_.is_same(result_)) result_.copy_(work_);
    return result_;
  }

 private:
  at::Tensor result_, work_;
};

// [C, 1, k, k] depthwise weight -> [k*k, C] (taps major, channels contiguous).  Free when the
// weight already is a view of such a buffer (the model keeps its folded weights that way).
inline at::Tensor pack_taps_by_channel(const at::Tensor& weight) {
  const int64_t C = weight.size(0), kk = weight.size(2) * weight.size(3);
  return weight.permute({2, 3, 1, 0}).contiguous().view({kk, C});
}

}  // namespace mbv3
