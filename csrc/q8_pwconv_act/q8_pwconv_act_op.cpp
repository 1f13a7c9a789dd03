// torch binding of mbv3::q8_pwconv_act: schema, input checks, weight packing, threading, ISA choice.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "common/isa_dispatch.h"
#include "common/op_utils.h"
#include "common/q8_args.h"
#include "common/q8_cpu_ops.h"
#include "q8_pwconv_act.h"

namespace mbv3 {
namespace {

constexpr const char* kOp = "q8_pwconv_act";
using Q8PwFn = void(const Q8PwArgs&, int64_t, int64_t, int64_t, int64_t);

// The int8 kernel family in force.
Q8PwFn* select_kernel(Q8Isa isa, int& mr) {
  switch (isa) {
#if MBV3_BUILD_X86 && !defined(MBV3_NO_AVX512)
    case Q8Isa::Avx512Vnni:
      mr = avx512_vnni::q8_pwconv_mr();
      return &avx512_vnni::q8_pwconv_act;
#endif
#if MBV3_BUILD_X86
    case Q8Isa::Avx2:
      mr = avx2::q8_pwconv_mr();
      return &avx2::q8_pwconv_act;
#endif
#if MBV3_BUILD_NEON
    case Q8Isa::Neon:
      mr = neon::q8_pwconv_mr();
      return &neon::q8_pwconv_act;
#endif
    default:
      mr = scalar::q8_pwconv_mr();
      return &scalar::q8_pwconv_act;
  }
}

// The packed form of a plain [Cout, Cin(, 1, 1)] int8 weight (q8_pwconv_act.h's layout).
at::Tensor pack(const at::Tensor& weight, int64_t cout, int64_t cin) {
  const at::Tensor w = weight.reshape({cout, cin}).contiguous();
  const int64_t ldw = q8_pw_ldw(cout), K4 = (cin + 3) / 4;
  at::Tensor out = at::zeros({q8_pw_packed_size(cin, cout)}, weight.options());
  const int8_t* src = w.data_ptr<int8_t>();
  int8_t* dst = out.data_ptr<int8_t>();
  for (int64_t n = 0; n < cout; ++n) {
    int32_t sum = 0;
    for (int64_t k = 0; k < cin; ++k) {
      dst[(k / 4) * 4 * ldw + 4 * n + k % 4] = src[n * cin + k];
      sum += src[n * cin + k];
    }
    std::memcpy(dst + K4 * 4 * ldw + 4 * n, &sum, 4);
  }
  return out;
}

}  // namespace

at::Tensor q8_pwconv_act_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& weight,
                             const at::Tensor& bias_int, const at::Tensor& bias_float, const at::Tensor& multiplier,
                             c10::IntArrayRef out_qparams, const std::optional<at::Tensor>& lut,
                             const std::optional<at::Tensor>& residual, std::optional<c10::ArrayRef<double>> add,
                             const std::optional<at::Tensor>& se_scale, std::optional<c10::ArrayRef<double>> mul,
                             std::optional<c10::ArrayRef<double>> onednn) {
  check_q8_x(x, kOp);
  check_q8_zero_point(x_zero_point, kOp, "x_zero_point");
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK_VALUE(weight.scalar_type() == at::kChar, kOp, ": weight must be int8 (qweight.int_repr() or "
                    "pack_weight's result), got ", weight.scalar_type());
  TORCH_CHECK(weight.device().is_cpu(), kOp, ": weight must be on the CPU, got ", weight.device());
  int64_t Cout = 0;
  const bool packed = weight.dim() == 1;
  if (packed) {
    TORCH_CHECK_VALUE(bias_int.dim() == 1, kOp, ": bias_int must be 1-D [Cout], got ", bias_int.sizes());
    Cout = bias_int.size(0);
    TORCH_CHECK_VALUE(weight.size(0) == q8_pw_packed_size(Cin, Cout) && weight.is_contiguous(), kOp,
                      ": a packed weight (1-D) must be pack_weight's contiguous result for Cin = ", Cin,
                      " and Cout = ", Cout, " (bias_int's length): ", q8_pw_packed_size(Cin, Cout),
                      " values, got ", weight.size(0));
  } else {
    int64_t wcin = 0;
    TORCH_CHECK_VALUE(matrix_shape(weight, Cout, wcin) && wcin == Cin, kOp,
                      ": weight must be [Cout, Cin, 1, 1] or [Cout, Cin] with Cin = ", Cin,
                      " (x's channels), or 1-D packed by pack_weight, got ", weight.sizes());
  }
  at::Tensor storage[4];
  Q8Requant rq = q8_requant_args(bias_int, bias_float, multiplier, out_qparams, lut, Cout, kOp, storage, onednn);
  TORCH_CHECK_VALUE(residual.has_value() == add.has_value(), kOp, ": residual and add come together (got ",
                    residual ? "residual" : "add", " alone)");
  TORCH_CHECK_VALUE(se_scale.has_value() == mul.has_value(), kOp, ": se_scale and mul come together (got ",
                    se_scale ? "se_scale" : "mul", " alone)");
  Q8Add addp{};
  Q8Mul mulp{};
  at::Tensor r_storage, s_storage;
  if (residual) {
    const at::Tensor& r = *residual;
    TORCH_CHECK_VALUE(r.scalar_type() == at::kByte, kOp, ": residual must be uint8, got ", r.scalar_type());
    TORCH_CHECK(r.device().is_cpu(), kOp, ": residual must be on the CPU, got ", r.device());
    TORCH_CHECK_VALUE(r.dim() == 4 && r.size(0) == N && r.size(1) == Cout && r.size(2) == H && r.size(3) == W, kOp,
                      ": residual must be [N, Cout, H, W] = [", N, ", ", Cout, ", ", H, ", ", W, "], got ", r.sizes());
    addp = q8_add_args(*add, kOp);
    r_storage = r.contiguous(at::MemoryFormat::ChannelsLast);
  }
  if (se_scale) {
    const at::Tensor& s = *se_scale;
    TORCH_CHECK_VALUE(s.scalar_type() == at::kByte, kOp, ": se_scale must be uint8, got ", s.scalar_type());
    TORCH_CHECK(s.device().is_cpu(), kOp, ": se_scale must be on the CPU, got ", s.device());
    TORCH_CHECK_VALUE(s.dim() == 2 && s.size(0) == N && s.size(1) == Cin, kOp, ": se_scale must be [N, Cin] = [", N,
                      ", ", Cin, "], got ", s.sizes());
    mulp = q8_mul_args(*mul, kOp);
    s_storage = s.contiguous();
  }

  // Output in x's layout (NhwcOutput's rule); the kernels write NHWC.
  const at::Tensor result = at::empty({N, Cout, H, W}, x.options().memory_format(
      wants_channels_last(x) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
  const at::Tensor work = result.is_contiguous(at::MemoryFormat::ChannelsLast)
                              ? result
                              : at::empty({N, Cout, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const int64_t M = N * H * W;
  if (M == 0 || Cout == 0) return result;
  const at::Tensor w = packed ? weight : pack(weight, Cout, Cin);
  const at::Tensor xn = x.contiguous(at::MemoryFormat::ChannelsLast);

  // Per-column terms padded to whole 16-column vectors: fold = bias_int - x_zp * colsum, the
  // float bias and the multiplier (zero padding).
  const int64_t ldw = q8_pw_ldw(Cout), K4 = (Cin + 3) / 4;
  at::Tensor cols = at::zeros({3 * ldw + 256}, x.options().dtype(at::kInt));
  int32_t* fold = cols.data_ptr<int32_t>();
  float* bf = reinterpret_cast<float*>(fold + ldw);
  float* mult = bf + ldw;
  int32_t* lut32 = reinterpret_cast<int32_t*>(mult + ldw);
  const int8_t* colsum_bytes = w.data_ptr<int8_t>() + K4 * 4 * ldw;
  for (int64_t n = 0; n < Cout; ++n) {
    int32_t colsum;
    std::memcpy(&colsum, colsum_bytes + 4 * n, 4);
    fold[n] = static_cast<int32_t>(rq.bias_int[n] - static_cast<int64_t>(x_zero_point) * colsum);
    bf[n] = rq.bias_float[n];
    mult[n] = rq.multiplier[n];
  }
  if (rq.lut)
    for (int i = 0; i < 256; ++i) lut32[i] = rq.lut[i];
  Q8Requant prq = rq;
  prq.bias_float = bf;
  prq.multiplier = mult;

  Q8PwArgs p{xn.data_ptr<uint8_t>(), w.data_ptr<int8_t>(), fold, rq.lut ? lut32 : nullptr,
             residual ? r_storage.data_ptr<uint8_t>() : nullptr, se_scale ? s_storage.data_ptr<uint8_t>() : nullptr,
             work.data_ptr<uint8_t>(), M, Cin, Cout, H * W, ldw, static_cast<int32_t>(x_zero_point), prq, addp, mulp};

  // The work split of pwconv_bn_act's run_pwconv: row chunks whose rows stay cached; at batch 1
  // rows split 2 per thread, else once per thread and then 64-column panels (7x7 maps), so each
  // thread streams its share of the weights.  Integer sums: any split gives the same bits.
  int mr = 1;
  Q8PwFn* kernel = select_kernel(q8_isa(current_isa()), mr);
  const int64_t threads = num_threads();
  const int64_t vec = kQ8PwCols, nvec = ldw / vec, max_panels = (nvec + 3) / 4;
  const int64_t rows_cap = std::max<int64_t>(mr, 65536 / std::max<int64_t>(Cin, 1));
  int64_t m_chunks = (M + rows_cap - 1) / rows_cap, n_chunks = 1;
  if (threads > 1 && m_chunks < 2 * threads) {
    m_chunks = std::max(m_chunks, std::min(2 * threads, M / (4 * mr)));
    m_chunks = std::max(m_chunks, std::min(threads, (M + mr - 1) / mr));
    if (m_chunks < 2 * threads) n_chunks = std::min(max_panels, (2 * threads + m_chunks - 1) / m_chunks);
  } else if (threads > 1) {
    m_chunks = (m_chunks + threads - 1) / threads * threads;
  }
  m_chunks = std::max<int64_t>(1, std::min(m_chunks, M));
  const int64_t units = m_chunks * n_chunks;
  const int64_t unit_macs = (M / m_chunks) * std::max<int64_t>(Cin, 1) * (Cout / n_chunks);
  auto bound = [](int64_t i, int64_t total, int64_t parts) { return i * total / parts; };
  parallel_for(0, units, parallel_grain(unit_macs, 65536), [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t mi = n_chunks > 1 ? u % m_chunks : u / n_chunks, ni = n_chunks > 1 ? u / m_chunks : u % n_chunks;
      kernel(p, bound(mi, M, m_chunks), bound(mi + 1, M, m_chunks), std::min(Cout, bound(ni, nvec, n_chunks) * vec),
             std::min(Cout, bound(ni + 1, nvec, n_chunks) * vec));
    }
  });
  if (!work.is_same(result)) result.copy_(work);
  return result;
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("q8_pwconv_act(Tensor x, int x_zero_point, Tensor weight, Tensor bias_int, Tensor bias_float, "
        "Tensor multiplier, int[] out_qparams, Tensor? lut=None, Tensor? residual=None, float[]? add=None, "
        "Tensor? se_scale=None, float[]? mul=None, float[]? onednn=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) { m.impl("q8_pwconv_act", &mbv3::q8_pwconv_act_cpu); }
