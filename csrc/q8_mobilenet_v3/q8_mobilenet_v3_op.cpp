// torch binding of mbv3::q8_mobilenet_v3: the whole int8 MobileNetV3 forward (quantizing stem,
// inverted residual blocks, last 1x1 conv, classifier head + dequantize) as one op call.
//
// Why: the int8 Large forward is ~60 op calls, each with Python, dispatcher and argument
// handling when called from Python.  Here the same CPU entry points (common/q8_cpu_ops.h) are
// called directly with the arguments QuantizedMobileNetV3's per-op forward passes, so every value
// is computed exactly as by that path (the tests check bit equality).
//
// No kernel of its own.  The network is `weights` (the plan's tensors), `spec` (its ints: tensor
// indices into weights, zero points, qparams, geometry, presence flags, float-list lengths) and
// `fspec` (its floats, in the same record order); mbv3_fast/quantization/spec.py writes them from
// the int8 plan and documents the layout.  Every index, flag and length is checked here and every
// layer's shapes and arguments by the op it calls, so a bad spec raises, never reads out of bounds.
#include <torch/library.h>

#include <optional>
#include <ostream>
#include <vector>

#include "common/parallel.h"
#include "common/q8_cpu_ops.h"

namespace mbv3 {
namespace {

constexpr int64_t kSpecVersion = 2;  // mbv3_fast.quantization.spec.SPEC_VERSION

// The records of mbv3_fast.quantization.model (_Layer, the SE and head tuples, _Block, _Plan).
// Tensors are indices into weights (-1: None, for the optional lut); qparams and float lists
// point into spec / fspec, which outlive the call.
struct Layer {
  int64_t weight, bias_int, bias_float, multiplier;
  at::IntArrayRef out_qparams;
  int64_t lut, stride, padding, dilation, out_zp;
  double out_scale;
  std::optional<c10::ArrayRef<double>> onednn;  // the requantization mode (q8.h): None = Fbgemm
};
struct SE {
  int64_t w1, bias_int1, bias_float1, multiplier1;
  at::IntArrayRef out_qparams1;
  int64_t w2, bias_int2, bias_float2, multiplier2;
  at::IntArrayRef out_qparams2;
  int64_t lut;
  double x_scale;
  std::optional<c10::ArrayRef<double>> onednn1, onednn2;
};
struct Block {
  int64_t x_zp;
  std::optional<Layer> expand;
  int64_t dw_x_zp;
  Layer dw;
  std::optional<SE> se;
  std::optional<at::ArrayRef<double>> mul;
  int64_t project_x_zp;
  Layer project;
  std::optional<at::ArrayRef<double>> add;
};
struct Head {
  int64_t w1, bias_int1, bias_float1, multiplier1;
  at::IntArrayRef out_qparams1;
  int64_t lut1, hidden_zp, w2, bias_int2, bias_float2, multiplier2;
  at::IntArrayRef out_qparams2;
  double out_scale, x_scale;
  std::optional<c10::ArrayRef<double>> onednn1, onednn2;
};
struct Net {
  double x_scale;
  int64_t x_zp;
  Layer stem;
  std::vector<Block> blocks;
  int64_t last_x_zp;
  Layer last;
  Head head;
  double logit_step;
};

constexpr size_t kQParams = 3;  // out_qparams: (zero point, clamp min, clamp max)

// A spec field's name for messages ("block 3 se w2"), put together only when a check fails.
struct Name {
  int64_t block;  // -1: not in a block
  const char* record;
  const char* field;
  const char* suffix = "";
};
std::ostream& operator<<(std::ostream& o, const Name& n) {
  if (n.block >= 0) o << "block " << n.block << (*n.record || *n.field ? " " : "");
  o << n.record << (*n.record && *n.field ? " " : "") << n.field << n.suffix;
  return o;
}

// Reads spec and fspec front to back, with the checks (and messages) of spec.py's decoder.
class Reader {
 public:
  Reader(at::IntArrayRef spec, at::ArrayRef<double> fspec, size_t n_weights)
      : spec_(spec), fspec_(fspec), n_weights_(n_weights) {}

  // The record the next fields belong to (their names' prefix).
  void in(int64_t block, const char* record) {
    block_ = block;
    record_ = record;
  }
  int64_t next(const char* field, const char* suffix = "") {
    TORCH_CHECK_VALUE(pos_ < spec_.size(), "q8_mobilenet_v3: spec ends early (", spec_.size(),
                      " ints) where it should give ", name(field, suffix));
    return spec_[pos_++];
  }
  int64_t tensor(const char* field, bool optional = false) {
    const int64_t v = next(field);
    if (optional && v == -1) return v;
    TORCH_CHECK_VALUE(v >= 0 && v < int64_t(n_weights_), "q8_mobilenet_v3: spec gives weights[", v, "] as ",
                      name(field), ", but weights holds ", n_weights_, " tensors");
    return v;
  }
  bool flag(const char* field) {
    const int64_t v = next(field);
    TORCH_CHECK_VALUE(v == 0 || v == 1, "q8_mobilenet_v3: ", name(field), " must be 0 or 1, got ", v);
    return v == 1;
  }
  at::IntArrayRef qparams(const char* field) {
    TORCH_CHECK_VALUE(spec_.size() - pos_ >= kQParams, "q8_mobilenet_v3: spec ends early (", spec_.size(),
                      " ints) where it should give ", name(field));
    pos_ += kQParams;
    return spec_.slice(pos_ - kQParams, kQParams);
  }
  double real(const char* field) {
    TORCH_CHECK_VALUE(fpos_ < fspec_.size(), "q8_mobilenet_v3: fspec ends early (", fspec_.size(),
                      " floats) where it should give ", name(field));
    return fspec_[fpos_++];
  }
  // A layer's requantization mode: 0 (Fbgemm) or 1 in spec; 1: Onednn's two scales in fspec.
  std::optional<at::ArrayRef<double>> mode(const char* field) {
    if (!flag(field)) return std::nullopt;
    TORCH_CHECK_VALUE(fspec_.size() - fpos_ >= 2, "q8_mobilenet_v3: fspec ends early (", fspec_.size(),
                      " floats) where it should give ", name(field));
    fpos_ += 2;
    return fspec_.slice(fpos_ - 2, 2);
  }
  // A float list or None: its length in spec (-1: None), its values in fspec.
  std::optional<at::ArrayRef<double>> reals(const char* field) {
    const int64_t n = next(field, " length");
    if (n == -1) return std::nullopt;
    TORCH_CHECK_VALUE(n >= 0, "q8_mobilenet_v3: ", name(field), " length must be -1 (None) or >= 0, got ", n);
    TORCH_CHECK_VALUE(uint64_t(n) <= fspec_.size() - fpos_, "q8_mobilenet_v3: fspec ends early (", fspec_.size(),
                      " floats) where it should give the ", n, " floats of ", name(field));
    fpos_ += size_t(n);
    return fspec_.slice(fpos_ - size_t(n), size_t(n));
  }
  void done() {
    TORCH_CHECK_VALUE(pos_ == spec_.size(), "q8_mobilenet_v3: spec has ", spec_.size() - pos_, " ints past its end");
    TORCH_CHECK_VALUE(fpos_ == fspec_.size(), "q8_mobilenet_v3: fspec has ", fspec_.size() - fpos_,
                      " floats past its end");
  }
  size_t size() const { return spec_.size(); }

 private:
  Name name(const char* field, const char* suffix = "") const { return Name{block_, record_, field, suffix}; }

  at::IntArrayRef spec_;
  at::ArrayRef<double> fspec_;
  size_t n_weights_;
  size_t pos_ = 0, fpos_ = 0;
  int64_t block_ = -1;
  const char* record_ = "";
};

Layer read_layer(Reader& r, int64_t block, const char* record) {
  r.in(block, record);
  Layer l{};
  l.weight = r.tensor("weight");
  l.bias_int = r.tensor("bias_int");
  l.bias_float = r.tensor("bias_float");
  l.multiplier = r.tensor("multiplier");
  l.out_qparams = r.qparams("out_qparams");
  l.lut = r.tensor("lut", /*optional=*/true);
  l.stride = r.next("stride");
  l.padding = r.next("padding");
  l.dilation = r.next("dilation");
  l.out_zp = r.next("out_zp");
  l.out_scale = r.real("out_scale");
  l.onednn = r.mode("onednn");
  return l;
}

SE read_se(Reader& r, int64_t block) {
  r.in(block, "se");
  SE s{};
  s.w1 = r.tensor("w1");
  s.bias_int1 = r.tensor("bias_int1");
  s.bias_float1 = r.tensor("bias_float1");
  s.multiplier1 = r.tensor("multiplier1");
  s.out_qparams1 = r.qparams("out_qparams1");
  s.w2 = r.tensor("w2");
  s.bias_int2 = r.tensor("bias_int2");
  s.bias_float2 = r.tensor("bias_float2");
  s.multiplier2 = r.tensor("multiplier2");
  s.out_qparams2 = r.qparams("out_qparams2");
  s.lut = r.tensor("lut");
  s.x_scale = r.real("x_scale");
  s.onednn1 = r.mode("onednn1");
  s.onednn2 = r.mode("onednn2");
  return s;
}

Head read_head(Reader& r) {
  r.in(-1, "head");
  Head h{};
  h.w1 = r.tensor("w1");
  h.bias_int1 = r.tensor("bias_int1");
  h.bias_float1 = r.tensor("bias_float1");
  h.multiplier1 = r.tensor("multiplier1");
  h.out_qparams1 = r.qparams("out_qparams1");
  h.lut1 = r.tensor("lut1");
  h.hidden_zp = r.next("hidden_zero_point");
  h.w2 = r.tensor("w2");
  h.bias_int2 = r.tensor("bias_int2");
  h.bias_float2 = r.tensor("bias_float2");
  h.multiplier2 = r.tensor("multiplier2");
  h.out_qparams2 = r.qparams("out_qparams2");
  h.out_scale = r.real("out_scale");
  h.x_scale = r.real("x_scale");
  h.onednn1 = r.mode("onednn1");
  h.onednn2 = r.mode("onednn2");
  return h;
}

// The whole spec, checked before any layer runs.
Net parse(at::IntArrayRef spec, at::ArrayRef<double> fspec, size_t n_weights) {
  Reader r(spec, fspec, n_weights);
  const int64_t version = r.next("the version");
  TORCH_CHECK_VALUE(version == kSpecVersion, "q8_mobilenet_v3: spec version ", version, ", this build reads ",
                    kSpecVersion);
  const int64_t n_blocks = r.next("the block count");
  TORCH_CHECK_VALUE(n_blocks >= 0 && n_blocks <= int64_t(r.size()), "q8_mobilenet_v3: bad block count ", n_blocks);
  Net n{};
  n.x_scale = r.real("x_scale");
  n.x_zp = r.next("x_zero_point");
  n.stem = read_layer(r, -1, "stem");
  n.blocks.reserve(size_t(n_blocks));
  for (int64_t i = 0; i < n_blocks; ++i) {
    Block b{};
    r.in(i, "");
    b.x_zp = r.next("x_zero_point");
    if (r.flag("has_expand")) b.expand = read_layer(r, i, "expand");
    r.in(i, "depthwise");
    b.dw_x_zp = r.next("x_zero_point");
    b.dw = read_layer(r, i, "depthwise");
    r.in(i, "");
    if (r.flag("has_se")) b.se = read_se(r, i);
    r.in(i, "");
    b.mul = r.reals("mul");
    r.in(i, "project");
    b.project_x_zp = r.next("x_zero_point");
    b.project = read_layer(r, i, "project");
    r.in(i, "");
    b.add = r.reals("add");
    n.blocks.push_back(b);
  }
  r.in(-1, "last");
  n.last_x_zp = r.next("x_zero_point");
  n.last = read_layer(r, -1, "last");
  n.head = read_head(r);
  r.in(-1, "");
  n.logit_step = r.real("logit_step");
  r.done();
  return n;
}

// The walk of QuantizedMobileNetV3's per-op forward (mbv3_fast.quantization.model.run), in C++.
at::Tensor walk(const at::Tensor& x, at::TensorList w, at::IntArrayRef spec,
                at::ArrayRef<double> fspec) {
  const Net n = parse(spec, fspec, w.size());
  const auto lut = [&](int64_t i) { return i < 0 ? std::nullopt : std::optional<at::Tensor>(w[i]); };
  const auto pw = [&](const at::Tensor& q, int64_t x_zp, const Layer& l,
                      const std::optional<at::Tensor>& residual = std::nullopt,
                      std::optional<at::ArrayRef<double>> add = std::nullopt,
                      const std::optional<at::Tensor>& se_scale = std::nullopt,
                      std::optional<at::ArrayRef<double>> mul = std::nullopt) {
    return q8_pwconv_act_cpu(q, x_zp, w[l.weight], w[l.bias_int], w[l.bias_float], w[l.multiplier], l.out_qparams,
                             lut(l.lut), residual, add, se_scale, mul, l.onednn);
  };
  const Layer& s = n.stem;
  at::Tensor q = q8_conv_act_cpu(x, n.x_scale, n.x_zp, w[s.weight], w[s.bias_int], w[s.bias_float],
                                 w[s.multiplier], s.out_qparams, lut(s.lut), s.stride, s.padding, s.onednn);
  for (const Block& b : n.blocks) {
    const at::Tensor in = q;
    if (b.expand) q = pw(q, b.x_zp, *b.expand);
    const Layer& d = b.dw;
    q = q8_dwconv_act_cpu(q, b.dw_x_zp, w[d.weight], w[d.bias_int], w[d.bias_float], w[d.multiplier], d.out_qparams,
                          lut(d.lut), d.stride, d.padding, d.dilation, d.onednn);
    std::optional<at::Tensor> se;
    if (b.se) {
      const SE& e = *b.se;
      se = q8_se_cpu(q, d.out_zp, w[e.w1], w[e.bias_int1], w[e.bias_float1], w[e.multiplier1], e.out_qparams1,
                     w[e.w2], w[e.bias_int2], w[e.bias_float2], w[e.multiplier2], e.out_qparams2, w[e.lut],
                     e.x_scale, e.onednn1, e.onednn2);
    }
    // As the Python forward: the residual exactly when the block has an add list.
    q = pw(q, b.project_x_zp, b.project, b.add ? std::optional<at::Tensor>(in) : std::nullopt, b.add, se, b.mul);
  }
  q = pw(q, n.last_x_zp, n.last);
  const Head& h = n.head;
  return q8_classifier_head_cpu(q, n.last.out_zp, w[h.w1], w[h.bias_int1], w[h.bias_float1], w[h.multiplier1],
                                h.out_qparams1, w[h.lut1], h.hidden_zp, w[h.w2], w[h.bias_int2], w[h.bias_float2],
                                w[h.multiplier2], h.out_qparams2, h.out_scale, h.x_scale, h.onednn1, h.onednn2);
}

// The op: the walk inside one team (common/parallel.h), so that its ~70 parallel loops share
// threads started once.
at::Tensor q8_mobilenet_v3_cpu(const at::Tensor& x, at::TensorList w, at::IntArrayRef spec,
                               at::ArrayRef<double> fspec) {
  at::Tensor out;
  with_team([&] { out = walk(x, w, spec, fspec); });
  return out;
}

}  // namespace
}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("q8_mobilenet_v3(Tensor x, Tensor[] weights, int[] spec, float[] fspec) -> Tensor");
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) { m.impl("q8_mobilenet_v3", &mbv3::q8_mobilenet_v3_cpu); }
