// The int8 ops' shared arguments (q8.h), checked and read from their schema form, for every q8
// binding.  Python builds them in mbv3_fast/quantization/params.py, in the same order.
//   requantization: Tensor bias_int (int32 [Cout]), Tensor bias_float (float32 [Cout]),
//                   Tensor multiplier (float32 [Cout]), int[] out_qparams = [zp, lo, hi],
//                   Tensor? lut (uint8 [256]); and, last in the schema, float[]? onednn:
//                   None for the Fbgemm mode, [src_scale, inv_scale] (float32 values) for the
//                   Onednn mode (q8.h; multiplier and bias_float then hold its scale and the raw bias)
//   add:            float[] = [mode, a_scale, a_offset, b_scale, b_offset, inv_scale,
//                              a_mult, b_mult, zp_product, shift, zp]
//   mul:            float[] = [a_zp, b_zp, zp, multiplier]
// Every value is a float32 or an integer, so the doubles of a schema carry them exactly.
#pragma once
#include <ATen/ATen.h>

#include "q8.h"

namespace mbv3 {

// x of a q8 op: uint8 [N, C, H, W] (any layout; the kernels read NHWC).
inline void check_q8_x(const at::Tensor& x, const char* op) {
  TORCH_CHECK_VALUE(x.scalar_type() == at::kByte, op, ": x must be uint8 (the int values of a quint8 tensor), got ",
                    x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [N, C, H, W], got ", x.dim(), "-D");
  TORCH_CHECK(x.device().is_cpu(), op, ": the int8 ops run on the CPU, got x on ", x.device());
}

inline void check_q8_zero_point(int64_t zp, const char* op, const char* name) {
  TORCH_CHECK_VALUE(zp >= 0 && zp <= 255, op, ": ", name, " must be in [0, 255], got ", zp);
}

inline void check_q8_vector(const at::Tensor& t, at::ScalarType dtype, int64_t n, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, op, ": ", name, " must be [", n, "], got ", t.sizes());
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be on the CPU, got ", t.device());
}

// Checks the requantization arguments for `cout` channels; the pointers stay valid while the
// tensors (and `storage`, holding contiguous copies) live.
inline Q8Requant q8_requant_args(const at::Tensor& bias_int, const at::Tensor& bias_float,
                                 const at::Tensor& multiplier, c10::IntArrayRef out_qparams,
                                 const std::optional<at::Tensor>& lut, int64_t cout, const char* op,
                                 at::Tensor (&storage)[4], std::optional<c10::ArrayRef<double>> onednn = std::nullopt) {
  check_q8_vector(bias_int, at::kInt, cout, op, "bias_int");
  check_q8_vector(bias_float, at::kFloat, cout, op, "bias_float");
  check_q8_vector(multiplier, at::kFloat, cout, op, "multiplier");
  TORCH_CHECK_VALUE(out_qparams.size() == 3, op, ": out_qparams must be [zero_point, lo, hi], got ",
                    out_qparams.size(), " values");
  const int64_t zp = out_qparams[0], lo = out_qparams[1], hi = out_qparams[2];
  TORCH_CHECK_VALUE(0 <= lo && lo <= zp && zp <= hi && hi <= 255, op,
                    ": out_qparams [zero_point, lo, hi] need 0 <= lo <= zero_point <= hi <= 255, got [", zp, ", ",
                    lo, ", ", hi, "]");
  storage[0] = bias_int.contiguous();
  storage[1] = bias_float.contiguous();
  storage[2] = multiplier.contiguous();
  const uint8_t* table = nullptr;
  if (lut) {
    check_q8_vector(*lut, at::kByte, 256, op, "lut");
    storage[3] = lut->contiguous();
    table = storage[3].data_ptr<uint8_t>();
  }
  Q8Requant r{storage[0].data_ptr<int32_t>(), storage[1].data_ptr<float>(), storage[2].data_ptr<float>(),
              static_cast<int32_t>(zp), static_cast<int32_t>(lo), static_cast<int32_t>(hi), table};
  if (onednn) {
    TORCH_CHECK_VALUE(onednn->size() == 2, op, ": onednn must be [src_scale, inv_scale] "
                      "(mbv3_fast.quantization.params.onednn_scales), got ", onednn->size(), " values");
    for (const double s : *onednn)
      TORCH_CHECK_VALUE(std::isfinite(s) && s > 0 && static_cast<double>(static_cast<float>(s)) == s, op,
                        ": onednn scales must be positive finite float32 values, got ", s);
    r.mode = Q8RequantMode::Onednn;
    r.src_scale = static_cast<float>((*onednn)[0]);
    r.inv_scale = static_cast<float>((*onednn)[1]);
  }
  return r;
}

inline Q8Add q8_add_args(c10::ArrayRef<double> a, const char* op) {
  TORCH_CHECK_VALUE(a.size() == 11, op, ": add must hold 11 values (mbv3_fast.quantization.params.add_args), got ",
                    a.size());
  TORCH_CHECK_VALUE(a[0] == 0 || a[0] == 1, op, ": add mode must be 0 (float) or 1 (qnnpack), got ", a[0]);
  TORCH_CHECK_VALUE(a[9] >= 0 && a[9] < 32 && a[10] >= 0 && a[10] <= 255, op, ": add shift or zero point out of range");
  Q8Add p;
  p.mode = a[0] == 0 ? Q8AddMode::Float : Q8AddMode::Qnnpack;
  p.a_scale = static_cast<float>(a[1]);
  p.a_offset = static_cast<float>(a[2]);
  p.b_scale = static_cast<float>(a[3]);
  p.b_offset = static_cast<float>(a[4]);
  p.inv_scale = static_cast<float>(a[5]);
  p.a_mult = static_cast<int32_t>(a[6]);
  p.b_mult = static_cast<int32_t>(a[7]);
  p.zp_product = static_cast<int32_t>(a[8]);
  p.shift = static_cast<int32_t>(a[9]);
  p.zp = static_cast<int32_t>(a[10]);
  return p;
}

inline Q8Mul q8_mul_args(c10::ArrayRef<double> a, const char* op) {
  TORCH_CHECK_VALUE(a.size() == 4, op, ": mul must hold 4 values (mbv3_fast.quantization.params.mul_args), got ",
                    a.size());
  for (int i = 0; i < 3; ++i)
    TORCH_CHECK_VALUE(a[i] >= 0 && a[i] <= 255, op, ": mul zero points must be in [0, 255]");
  return Q8Mul{static_cast<int32_t>(a[0]), static_cast<int32_t>(a[1]), static_cast<int32_t>(a[2]),
               static_cast<float>(a[3])};
}

}  // namespace mbv3
