// Runs csrc/q8_pwconv_act/q8_pwconv_act_neon.cpp (the file the ARM build ships) on every case in a file.
// Case (int64 unless marked float): N K Cout HW x_zp zp lo hi has_lut has_res has_se onednn, x
// [N*HW, K], the packed weight's bytes (pack_weight), bias_int [Cout], float bias_float [Cout],
// float multiplier [Cout]; float src_scale inv_scale if onednn (the Onednn requantization mode); lut [256] if any; residual [N*HW, Cout], mode a_mult b_mult zp_product shift
// zp, float a_scale a_offset b_scale b_offset inv_scale if any; se [N, K], a_zp b_zp zp, float
// multiplier if any.  Output: one float, 1 where the CPU reports FEAT_DotProd (the SDOT kernel
// runs), then each case's y [N*HW, Cout] as floats.
#include "q8_pwconv_act/q8_pwconv_act.h"
#include "case_io.h"

#include <sys/auxv.h>

template <class T>
std::vector<T> ints(CaseReader& in, int64_t n) {
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& e : v) e = static_cast<T>(in.i64());
  return v;
}

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  CaseReader in(argv[1]);
  CaseWriter out(argv[2]);
  out.floats({(getauxval(AT_HWCAP) & (1ul << 20)) ? 1.f : 0.f});
  for (int64_t n_cases = in.i64(); n_cases > 0; --n_cases) {
    const int64_t N = in.i64(), K = in.i64(), Cout = in.i64(), HW = in.i64();
    const int32_t x_zp = static_cast<int32_t>(in.i64());
    mbv3::Q8Requant rq{};
    rq.zp = static_cast<int32_t>(in.i64());
    rq.lo = static_cast<int32_t>(in.i64());
    rq.hi = static_cast<int32_t>(in.i64());
    const bool has_lut = in.i64() != 0, has_res = in.i64() != 0, has_se = in.i64() != 0, onednn = in.i64() != 0;
    const int64_t M = N * HW, ldw = mbv3::q8_pw_ldw(Cout), K4 = (K + 3) / 4;
    const auto x = ints<uint8_t>(in, M * K);
    const auto w = ints<int8_t>(in, mbv3::q8_pw_packed_size(K, Cout));
    const auto bias_int = ints<int32_t>(in, Cout);
    auto bf = in.floats(Cout), mult = in.floats(Cout);
    if (onednn) {
      rq.mode = mbv3::Q8RequantMode::Onednn;
      const auto s = in.floats(2);
      rq.src_scale = s[0];
      rq.inv_scale = s[1];
    }
    bf.resize(ldw, 0.f);
    mult.resize(ldw, 0.f);
    std::vector<int32_t> fold(ldw, 0);
    for (int64_t n = 0; n < Cout; ++n) {
      int32_t colsum;
      std::memcpy(&colsum, w.data() + K4 * 4 * ldw + 4 * n, 4);
      fold[n] = static_cast<int32_t>(bias_int[n] - static_cast<int64_t>(x_zp) * colsum);
    }
    std::vector<uint8_t> lut, res, se;
    std::vector<int32_t> lut32;
    if (has_lut) {
      lut = ints<uint8_t>(in, 256);
      lut32.assign(lut.begin(), lut.end());
    }
    mbv3::Q8Add add{};
    if (has_res) {
      res = ints<uint8_t>(in, M * Cout);
      add.mode = static_cast<mbv3::Q8AddMode>(in.i64());
      add.a_mult = static_cast<int32_t>(in.i64());
      add.b_mult = static_cast<int32_t>(in.i64());
      add.zp_product = static_cast<int32_t>(in.i64());
      add.shift = static_cast<int32_t>(in.i64());
      add.zp = static_cast<int32_t>(in.i64());
      const auto f = in.floats(5);
      add.a_scale = f[0]; add.a_offset = f[1]; add.b_scale = f[2]; add.b_offset = f[3]; add.inv_scale = f[4];
    }
    mbv3::Q8Mul mul{};
    if (has_se) {
      se = ints<uint8_t>(in, N * K);
      mul.a_zp = static_cast<int32_t>(in.i64());
      mul.b_zp = static_cast<int32_t>(in.i64());
      mul.zp = static_cast<int32_t>(in.i64());
      mul.multiplier = in.floats(1)[0];
    }
    rq.bias_int = bias_int.data();
    rq.bias_float = bf.data();
    rq.multiplier = mult.data();
    rq.lut = has_lut ? lut.data() : nullptr;
    std::vector<uint8_t> y(static_cast<size_t>(M * Cout), 0xA5);  // poison
    mbv3::Q8PwArgs p{x.data(), w.data(), fold.data(), has_lut ? lut32.data() : nullptr,
                     has_res ? res.data() : nullptr, has_se ? se.data() : nullptr, y.data(),
                     M, K, Cout, HW, ldw, x_zp, rq, add, mul};
    // Four blocks, as the threaded binding splits them: rows at an odd row, columns at 16.
    const int64_t ms = M / 2 + (M > 2 ? 1 : 0), ns = Cout > 16 ? 16 : Cout;
    mbv3::neon::q8_pwconv_act(p, 0, ms, 0, ns);
    mbv3::neon::q8_pwconv_act(p, ms, M, 0, ns);
    mbv3::neon::q8_pwconv_act(p, 0, ms, ns, Cout);
    mbv3::neon::q8_pwconv_act(p, ms, M, ns, Cout);
    out.floats(std::vector<float>(y.begin(), y.end()));
  }
  return 0;
}
