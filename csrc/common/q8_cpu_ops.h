// The CPU entry points of the int8 ops (defined in csrc/q8_<op>/q8_<op>_op.cpp, registered there
// with the dispatcher), declared once for C++ callers that run several layers in one op call.
#pragma once
#include <ATen/ATen.h>

#include <optional>

namespace mbv3 {

at::Tensor q8_quantize_cpu(const at::Tensor& x, double scale, int64_t zero_point);

at::Tensor q8_conv_act_cpu(const at::Tensor& x, double x_scale, int64_t x_zero_point, const at::Tensor& weight,
                           const at::Tensor& bias_int, const at::Tensor& bias_float, const at::Tensor& multiplier,
                           c10::IntArrayRef out_qparams, const std::optional<at::Tensor>& lut, int64_t stride,
                           int64_t padding, std::optional<c10::ArrayRef<double>> onednn = std::nullopt);

at::Tensor q8_dwconv_act_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& weight,
                             const at::Tensor& bias_int, const at::Tensor& bias_float, const at::Tensor& multiplier,
                             c10::IntArrayRef out_qparams, const std::optional<at::Tensor>& lut, int64_t stride,
                             int64_t padding, int64_t dilation, std::optional<c10::ArrayRef<double>> onednn = std::nullopt);

at::Tensor q8_pwconv_act_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& weight,
                             const at::Tensor& bias_int, const at::Tensor& bias_float, const at::Tensor& multiplier,
                             c10::IntArrayRef out_qparams, const std::optional<at::Tensor>& lut,
                             const std::optional<at::Tensor>& residual, std::optional<c10::ArrayRef<double>> add,
                             const std::optional<at::Tensor>& se_scale, std::optional<c10::ArrayRef<double>> mul,
                             std::optional<c10::ArrayRef<double>> onednn = std::nullopt);

at::Tensor q8_se_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& w1, const at::Tensor& bias_int1,
                     const at::Tensor& bias_float1, const at::Tensor& multiplier1, c10::IntArrayRef out_qparams1,
                     const at::Tensor& w2, const at::Tensor& bias_int2, const at::Tensor& bias_float2,
                     const at::Tensor& multiplier2, c10::IntArrayRef out_qparams2, const at::Tensor& lut,
                     std::optional<double> x_scale, std::optional<c10::ArrayRef<double>> onednn1 = std::nullopt,
                     std::optional<c10::ArrayRef<double>> onednn2 = std::nullopt);

at::Tensor q8_classifier_head_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& w1,
                                  const at::Tensor& bias_int1, const at::Tensor& bias_float1,
                                  const at::Tensor& multiplier1, c10::IntArrayRef out_qparams1, const at::Tensor& lut1,
                                  int64_t hidden_zero_point, const at::Tensor& w2, const at::Tensor& bias_int2,
                                  const at::Tensor& bias_float2, const at::Tensor& multiplier2,
                                  c10::IntArrayRef out_qparams2, double out_scale, std::optional<double> x_scale,
                                  std::optional<c10::ArrayRef<double>> onednn1 = std::nullopt,
                                  std::optional<c10::ArrayRef<double>> onednn2 = std::nullopt);

}  // namespace mbv3
