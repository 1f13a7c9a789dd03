// torch binding of mbv3::pwconv_bn_act: schema, input checks, layout, threading, ISA choice.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "common/isa_dispatch.h"
#include "common/cpu_ops.h"
#include "common/op_utils.h"
#include "pwconv_bn_act.h"

namespace mbv3 {
namespace {

// The op's argument checks (metadata only), for every device: the CPU op, its fake kernel and the
// CUDA path (through mbv3::_check_pwconv_bn_act).  Returns Cout.
int64_t check_pwconv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                     const std::optional<at::Tensor>& residual, const std::optional<at::Tensor>& in_scale) {
  check_x(x, "pwconv_bn_act", "N, Cin, H, W");
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  check_param(x, weight, "weight");
  check_param(x, bias, "bias");
  const int64_t Cout = check_pw_weight(x, weight, bias, "pwconv_bn_act", "weight", "bias");
  if (residual) {
    check_param(x, *residual, "residual");
    TORCH_CHECK_VALUE(residual->dim() == 4 && residual->size(0) == N && residual->size(1) == Cout &&
                          residual->size(2) == H && residual->size(3) == W,
                      "pwconv_bn_act: residual must be [N, Cout, H, W] = [", N, ", ", Cout, ", ", H, ", ", W,
                      "], got ", residual->sizes());
  }
  if (in_scale) {
    check_param(x, *in_scale, "in_scale");
    TORCH_CHECK_VALUE(in_scale->dim() == 2 && in_scale->size(0) == N && in_scale->size(1) == Cin,
                      "pwconv_bn_act: in_scale must be [N, Cin] = [", N, ", ", Cin, "], got ",
                      in_scale->sizes());
  }
  return Cout;
}

// [Cout, activation code]
std::vector<int64_t> check_pwconv_op(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                     c10::string_view activation, const std::optional<at::Tensor>& residual,
                                     const std::optional<at::Tensor>& in_scale) {
  const int64_t Cout = check_pwconv(x, weight, bias, residual, in_scale);
  return {Cout, int64_t(parse_activation(activation, "pwconv_bn_act"))};
}

// Work unit: a chunk of rows x a chunk of columns, chunks of near-equal size (so that the
// threads' shares, contiguous runs of units, are balanced).  Row chunks keep their x rows
// (chunk x Cin floats) within ~128 KB so the rows stay cached while every panel passes over
// them.  With fewer row chunks than 2 per thread (batch 1): where the weights outweigh the rows
// (Cout > M: the expands of the 14x14 and 7x7 blocks) only the columns (whole vectors) are
// split, so each thread streams half the (cold) weights (README, "Design notes"); else the rows
// are split into 2 per thread while chunks keep >= 4 row tiles, else once per thread and then
// the columns too.  The grain keeps tiny layers on one thread: a wake-up costs µs.
template <class T>
void run_pwconv(PwConvArgs<T>& p, int64_t HW) {
  const int64_t M = p.M, Cin = p.K, Cout = p.Cout;
  const Isa isa = current_isa();
  auto* kernel = pwconv_kernel(isa, p);
  const PwTile tile = pwconv_tile_of(isa, p.k_pairs);
  const int64_t threads = num_threads();
  const int64_t vec = tile.vec, nvec = (Cout + vec - 1) / vec, max_panels = (nvec + tile.nr / vec - 1) / (tile.nr / vec);
  const int64_t rows_cap = std::max<int64_t>(tile.mr, 32768 / std::max<int64_t>(Cin, 1));
  int64_t m_chunks = (M + rows_cap - 1) / rows_cap, n_chunks = 1;
  if (threads > 1 && m_chunks < 2 * threads) {
    if (Cout <= M) {  // rows first, unless the weights outweigh them
      m_chunks = std::max(m_chunks, std::min(2 * threads, M / (4 * tile.mr)));  // rows enough
      m_chunks = std::max(m_chunks, std::min(threads, (M + tile.mr - 1) / tile.mr));
    }
    if (m_chunks < 2 * threads) n_chunks = std::min(max_panels, (2 * threads + m_chunks - 1) / m_chunks);
  } else if (threads > 1) {
    m_chunks = (m_chunks + threads - 1) / threads * threads;  // whole rounds: 7 chunks ran 4:3 on 2 threads
  }
  // SE scale: the rows' copy costs (rows of a chunk) x Cin per chunk, the weights' Cin x Cout;
  // decided from the chunk size at one thread (rows_cap: shape only), never the actual split.
  p.scale_rows = std::min(HW, rows_cap) <= Cout;
  const int64_t units = m_chunks * n_chunks;
  const int64_t unit_macs = (M / m_chunks) * std::max<int64_t>(Cin, 1) * (Cout / n_chunks);
  const int64_t grain = parallel_grain(unit_macs, 65536);
  // Chunk i of `total` split in `parts`: [i * total / parts, (i + 1) * total / parts).
  auto bound = [](int64_t i, int64_t total, int64_t parts) { return i * total / parts; };
  parallel_for(0, units, grain, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      // Split columns: a thread's run of units shares its columns, so each thread streams
      // only its share of the (cold, at batch 1) weights: 7x7 layers, 2 threads.
      const int64_t mi = n_chunks > 1 ? u % m_chunks : u / n_chunks, ni = n_chunks > 1 ? u / m_chunks : u % n_chunks;
      kernel(p, bound(mi, M, m_chunks), bound(mi + 1, M, m_chunks),
             std::min(Cout, bound(ni, nvec, n_chunks) * vec), std::min(Cout, bound(ni + 1, nvec, n_chunks) * vec));
    }
  });
}

}  // namespace

bool isa_has_k_pairs(Isa isa) {
#if MBV3_BUILD_X86 && !defined(MBV3_NO_AVX512)
  return isa == Isa::Avx512Bf16;
#elif MBV3_BUILD_NEON
  return isa == Isa::NeonBf16;
#else
  (void)isa;
  return false;
#endif
}

template <class T>
PwConvFn<T>* pwconv_kernel(Isa isa, const PwConvArgs<T>& p) {
  if constexpr (std::is_same_v<T, bf16>) {
#if MBV3_BUILD_X86 && !defined(MBV3_NO_AVX512)
    if (p.k_pairs) return &avx512_bf16::pwconv_bn_act_k_pairs;
#elif MBV3_BUILD_NEON
    if (p.k_pairs) return &neon_bf16::pwconv_bn_act_k_pairs;
#endif
  }
  TORCH_CHECK(!p.k_pairs, "pwconv_bn_act: no K-pair kernel on ", isa_name(isa));
  return MBV3_ISA_SELECT_AS(PwConvFn<T>, pwconv_bn_act, isa);
}
template PwConvFn<float>* pwconv_kernel(Isa, const PwConvArgs<float>&);
template PwConvFn<bf16>* pwconv_kernel(Isa, const PwConvArgs<bf16>&);

PwTile pwconv_tile_of(Isa isa, bool k_pairs) {
#if MBV3_BUILD_X86 && !defined(MBV3_NO_AVX512)
  if (k_pairs) return avx512_bf16::pwconv_tile_k_pairs();
#elif MBV3_BUILD_NEON
  if (k_pairs) return neon_bf16::pwconv_tile_k_pairs();
#endif
  (void)k_pairs;
  return MBV3_ISA_SELECT(pwconv_tile, isa)();
}

at::Tensor pwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             c10::string_view activation, const std::optional<at::Tensor>& residual,
                             const std::optional<at::Tensor>& in_scale) {
  return pwconv_bn_act_cpu(x, weight, bias, parse_activation(activation, "pwconv_bn_act"), residual, in_scale);
}

at::Tensor pwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, Act act,
                             const std::optional<at::Tensor>& residual,
                             const std::optional<at::Tensor>& in_scale) {
  check_cpu_x_dtype(x);
  const int64_t Cout = check_pwconv(x, weight, bias, residual, in_scale);
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);

  check_cpu_streamed(x, weight, "weight");
  if (residual) check_cpu_streamed(x, *residual, "residual");
  NhwcOutput out(x, {N, Cout, H, W});
  const int64_t M = N * H * W;
  if (M == 0 || Cout == 0) return out.result();
  const at::Tensor xn = x.contiguous(at::MemoryFormat::ChannelsLast);
  with_cpu_dtype(x, [&](auto t) {
    using T = decltype(t);
    at::Tensor w_storage, b_storage, r_storage, s_storage;
    const T* r = nullptr;
    if (residual) {
      r_storage = residual->contiguous(at::MemoryFormat::ChannelsLast);
      r = data_as<T>(r_storage);
    }
    const float* s = nullptr;
    if (in_scale) {
      s_storage = in_scale->to(at::kFloat).contiguous();
      s = s_storage.data_ptr<float>();
    }
    PwConvArgs<T> p{data_as<T>(xn), nullptr, dense_1d(bias, b_storage), s, r, out.data<T>(), M, Cin, Cout, H * W, 0, act};
    pw_weight_args(weight, Cout, Cin, isa_has_k_pairs(current_isa()), w_storage, p);
    run_pwconv(p, H * W);
  });
  return out.result();
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("pwconv_bn_act(Tensor x, Tensor weight, Tensor bias, str activation, Tensor? residual=None, "
        "Tensor? in_scale=None) -> Tensor");
  // The argument checks alone, on any device (fake and CUDA paths): [Cout, activation code].
  m.def("_check_pwconv_bn_act(Tensor x, Tensor weight, Tensor bias, str activation, Tensor? residual=None, "
        "Tensor? in_scale=None) -> int[]",
        &mbv3::check_pwconv_op);
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) {
  using Fn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view,
                            const std::optional<at::Tensor>&, const std::optional<at::Tensor>&);
  m.impl("pwconv_bn_act", static_cast<Fn>(&mbv3::pwconv_bn_act_cpu));
}
