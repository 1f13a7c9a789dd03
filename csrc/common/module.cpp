// The extension module: ops register through the dispatcher when the library is loaded (as in
// pytorch/extension-cpp), plus the ISA control ops.  Its Python functions are the model's cache
// checks, too hot a path for a dispatcher call: _tensor_state (csrc/common/tensor_state.cpp),
// _mobilenet_v3_guard / _mobilenet_v3_call (the eager model's fast call,
// csrc/mobilenet_v3/mobilenet_v3_call.cpp), _q8_mobilenet_v3_pack / _q8_mobilenet_v3_call (the
// int8 model's, csrc/q8_mobilenet_v3/q8_mobilenet_v3_call.cpp) and _cpu_isa_index (the path in
// force, whose 1x1 weight layout a CPU plan was packed for).
#include <Python.h>
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "cpu_isa.h"
#include "parallel.h"
#include "classifier_head/classifier_head.h"
#include "pwconv_bn_act/pwconv_bn_act.h"
#include "q8.h"
#include "tensor_state.h"
#include "mobilenet_v3/mobilenet_v3_call.h"
#include "q8_mobilenet_v3/q8_mobilenet_v3_call.h"

namespace {
PyObject* cpu_isa_index(PyObject*, PyObject*) { return PyLong_FromLong(static_cast<long>(mbv3::current_isa())); }
PyMethodDef kIsaMethods[] = {
    {"_cpu_isa_index", cpu_isa_index, METH_NOARGS, "The CPU path in force, as a number (for cache checks)."},
    {nullptr, nullptr, 0, nullptr}};
}  // namespace

extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* module = PyModule_Create(&def);
  if (module != nullptr && (mbv3::add_tensor_state_methods(module) < 0 || mbv3::add_mobilenet_v3_call_methods(module) < 0 ||
                            mbv3::add_q8_mobilenet_v3_call_methods(module) < 0 ||
                            PyModule_AddFunctions(module, kIsaMethods) < 0)) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}

namespace mbv3 {
namespace {
std::atomic<bool> g_poison{false};
}
bool debug_poison_outputs() { return g_poison.load(std::memory_order_relaxed); }
}  // namespace mbv3

namespace {

std::string get_cpu_isa() { return mbv3::isa_name(mbv3::current_isa()); }

void set_cpu_isa(c10::string_view name) {
  try {
    mbv3::set_current_isa(std::string(name));
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
}

std::vector<std::string> available_cpu_isas() {
  std::vector<std::string> out;
  for (mbv3::Isa isa : mbv3::available_isas()) out.emplace_back(mbv3::isa_name(isa));
  return out;
}

}  // namespace

TORCH_LIBRARY(mbv3, m) {
  m.def("get_cpu_isa() -> str", &get_cpu_isa);
  m.def("set_cpu_isa(str name) -> ()", &set_cpu_isa);
  m.def("available_cpu_isas() -> str[]", &available_cpu_isas);
  // Whether the path in force reads bf16 1x1 weights packed in K pairs (the model packs them so).
  m.def("cpu_isa_reads_k_pairs() -> bool", [] { return mbv3::isa_has_k_pairs(mbv3::current_isa()); });
  // Whether the path in force sums bf16 SE / head FC weights read by rows with dot products.
  m.def("cpu_fc_dot_products() -> bool", [] { return mbv3::fc_dot_products(mbv3::current_isa()); });
  // The panel width the path in force wants float32 1x1 weights packed in (0: K-major in place).
  m.def("cpu_pw_panel_cols() -> int", [] { return int64_t(mbv3::pwconv_tile_of(mbv3::current_isa(), false).panel); });
  // The panel height the path in force wants the head's float32 FC weights packed in (0: rows).
  m.def("cpu_head_panel_rows() -> int", [] { return mbv3::head_panel_rows(mbv3::current_isa()); });
  // The int8 kernel family the path in force runs (q8.h): scalar, avx2, avx512_vnni or neon.
  m.def("q8_cpu_isa() -> str", [] { return std::string(mbv3::q8_isa_name(mbv3::q8_isa(mbv3::current_isa()))); });
  m.def("_debug_poison_outputs(bool enable) -> ()",
        [](bool enable) { mbv3::g_poison.store(enable, std::memory_order_relaxed); });
  // The one-call forwards' loop trace (common/parallel.h): on / off, and the last team's rows.
  m.def("_set_team_trace(bool enable) -> ()", [](bool enable) { mbv3::team_detail::set_trace(enable); });
  m.def("_team_trace() -> Tensor", [] {
    std::vector<double> rows = mbv3::team_detail::last_trace();
    const int64_t n = int64_t(rows.size()) / mbv3::team_detail::kTraceFields;
    at::Tensor out = at::empty({n, mbv3::team_detail::kTraceFields}, at::kDouble);
    std::copy(rows.begin(), rows.end(), out.data_ptr<double>());
    return out;
  });
}
