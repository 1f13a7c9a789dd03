// The eager model's fast call (mbv3_fast/model.py, FastMobileNetV3.__call__): every check of the
// fused path's rules, then mbv3::mobilenet_v3, in one C call.
//
// Why: right after a forward the model's Python objects are cold (the forward streamed MBs of
// weights), and the same checks written in Python (module call, cache check, train flags, eps,
// 510 hook dicts) cost ~200 µs per call at batch 1: ~7% of a bf16 forward.  Here each check reads
// only the fields it needs, and the hook dicts are rescanned only when a hook may have been
// registered since the last scan (torch.utils.hooks.RemovableHandle.next_id moved: every
// register_*hook makes a handle).
//
// _mobilenet_v3_guard(plan fields...) -> capsule, stored as plan.guard.
// _mobilenet_v3_call(model, x) -> logits, or None wherever any rule is not plainly met: the
//   caller then runs the module's ordinary call, whose forward decides (refold, unfused, error).
#include <Python.h>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstdint>
#include <vector>

#include "common/cpu_isa.h"
#include "common/fast_call.h"
#include "common/tensor_state.h"
#include "mobilenet_v3/mobilenet_v3_call.h"

namespace mbv3 {
namespace {

constexpr const char* kCapsule = "mbv3_fast.mobilenet_v3_guard";

// The plan's checks.  The dicts are borrowed from tuples the plan keeps alive beside the capsule
// (plan.guard_refs), so the capsule holds no reference the garbage collector cannot see; tensors,
// eps and spec are copied in.
struct Guard {
  std::vector<at::Tensor> sources;
  std::vector<int64_t> state;        // 3 per source, as _tensor_state records them
  std::vector<PyObject*> mode_dicts; // __dict__ of modules whose `training` must be False
  std::vector<PyObject*> eps_dicts;  // __dict__ of the folded BatchNorms ...
  std::vector<double> eps;           // ... and the eps they were folded with
  std::vector<PyObject*> hook_dicts; // must all be empty
  PyObject* handle_cls = nullptr;    // torch.utils.hooks.RemovableHandle (a class: lives on)
  int64_t hooks_seen = -1;           // its next_id when the hook dicts were last found empty
  std::vector<at::Tensor> weights;   // plan.net_weights
  std::vector<int64_t> spec;         // plan.net_spec
  at::ScalarType dtype;
  int64_t in_channels = 0;
  int64_t isa = 0;
};

PyObject* s_training = nullptr;
PyObject* s_eps = nullptr;
PyObject* s_plan = nullptr;
PyObject* s_guard = nullptr;
PyObject* s_next_id = nullptr;
PyObject* s_compiled = nullptr;

void free_guard(PyObject* capsule) { delete static_cast<Guard*>(PyCapsule_GetPointer(capsule, kCapsule)); }

bool objects_of(PyObject* seq, std::vector<PyObject*>& out, bool dicts) {
  if (!PyTuple_Check(seq)) return false;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(seq); ++i) {
    PyObject* o = PyTuple_GET_ITEM(seq, i);
    if (dicts && !PyDict_Check(o)) return false;
    out.push_back(o);
  }
  return true;
}

// _mobilenet_v3_guard(sources, state, mode_dicts, eps_dicts, eps, hook_dicts, handle_cls,
//                     weights, spec, dtype_is_bf16, in_channels, isa)
PyObject* make_guard(PyObject*, PyObject* args) {
  PyObject *sources, *state, *mode_dicts, *eps_dicts, *eps, *hook_dicts, *handle_cls, *weights, *spec;
  int bf16 = 0;
  long long in_channels = 0, isa = 0;
  if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!OO!O!pLL", &PyTuple_Type, &sources, &PyByteArray_Type, &state,
                        &PyTuple_Type, &mode_dicts, &PyTuple_Type, &eps_dicts, &PyTuple_Type, &eps, &PyTuple_Type,
                        &hook_dicts, &handle_cls, &PyTuple_Type, &weights, &PyTuple_Type, &spec, &bf16,
                        &in_channels, &isa))
    return nullptr;
  constexpr const char* kBad = "_mobilenet_v3_guard: bad arguments";
  auto g = std::make_unique<Guard>();
  if (!tensors_from(sources, g->sources, kBad) || !tensors_from(weights, g->weights, kBad) ||
      !floats_from(eps, g->eps) || !ints_from(spec, g->spec))
    return nullptr;
  const Py_ssize_t n = PyTuple_GET_SIZE(sources);
  if (!objects_of(mode_dicts, g->mode_dicts, true) || !objects_of(eps_dicts, g->eps_dicts, true) ||
      !objects_of(hook_dicts, g->hook_dicts, true) || PyTuple_GET_SIZE(eps) != PyTuple_GET_SIZE(eps_dicts) ||
      PyByteArray_GET_SIZE(state) != n * 3 * Py_ssize_t(sizeof(int64_t))) {
    PyErr_SetString(PyExc_TypeError, kBad);
    return nullptr;
  }
  const auto* st = reinterpret_cast<const int64_t*>(PyByteArray_AS_STRING(state));
  g->state.assign(st, st + 3 * n);
  g->handle_cls = handle_cls;
  g->dtype = bf16 ? at::kBFloat16 : at::kFloat;
  g->in_channels = in_channels;
  g->isa = isa;
  PyObject* capsule = PyCapsule_New(g.get(), kCapsule, free_guard);
  if (capsule) g.release();
  return capsule;
}

// Borrowed d[key], or nullptr (no error set) when absent.
PyObject* item(PyObject* d, PyObject* key) {
  PyObject* v = PyDict_GetItemWithError(d, key);
  if (!v) PyErr_Clear();
  return v;
}

// Borrowed o.__dict__ (o keeps it), or nullptr.
PyObject* dict_of(PyObject* o) {
  PyObject* d = PyObject_GenericGetDict(o, nullptr);
  if (!d) return PyErr_Clear(), nullptr;
  Py_DECREF(d);
  return d;
}

// Every hook dict empty?  Rescanned only when a handle was made since the last empty scan.
bool no_hooks(Guard& g) {
  PyObject* id = PyObject_GetAttr(g.handle_cls, s_next_id);
  if (!id) return PyErr_Clear(), false;
  const long long next = PyLong_AsLongLong(id);
  Py_DECREF(id);
  if (next == -1 && PyErr_Occurred()) return PyErr_Clear(), false;
  if (next == g.hooks_seen) return true;
  for (PyObject* d : g.hook_dicts)
    if (PyDict_GET_SIZE(d) != 0) return false;
  g.hooks_seen = next;
  return true;
}

// The fused path's rules (FastMobileNetV3.forward), for the cached plan as it stands.
bool plainly_fused(Guard& g, PyObject* model_dict, const at::Tensor& x) {
  // Grad, tracing, modes, autocast: none of what would make the forward differ from a plain call.
  if (!plain_dispatch(x)) return false;
  const bool grad = at::GradMode::is_enabled();
  if (x.dim() != 4 || x.scalar_type() != g.dtype || !x.device().is_cpu() || x.size(1) != g.in_channels ||
      int64_t(current_isa()) != g.isa)
    return false;
  if (item(model_dict, s_training) != Py_False) return false;
  if (PyObject* c = item(model_dict, s_compiled); c && c != Py_None) return false;  // Module.compile()
  for (PyObject* d : g.mode_dicts)
    if (item(d, s_training) != Py_False) return false;
  for (size_t i = 0; i < g.eps_dicts.size(); ++i) {
    PyObject* e = item(g.eps_dicts[i], s_eps);
    if (!e || !PyFloat_CheckExact(e) || PyFloat_AS_DOUBLE(e) != g.eps[i]) return false;
  }
  if (!no_hooks(g)) return false;
  // The sources as folded (as _C._tensor_state records them).
  for (size_t i = 0; i < g.sources.size(); ++i) {
    const at::Tensor& t = g.sources[i];
    int64_t now[3];
    record_tensor_state(t, now);
    const int64_t* s = &g.state[3 * i];
    if (now[0] != s[0] || now[1] != s[1] || now[2] != s[2] || (grad && t.requires_grad())) return false;
  }
  return true;
}

// _mobilenet_v3_call(model, x) -> Tensor or None
PyObject* call(PyObject*, PyObject* args) {
  HANDLE_TH_ERRORS
  PyObject *model, *xo;
  if (!PyArg_ParseTuple(args, "OO", &model, &xo)) return nullptr;
  if (!THPVariable_CheckExact(xo)) Py_RETURN_NONE;
  PyObject* md = dict_of(model);
  PyObject* plan = md ? item(md, s_plan) : nullptr;
  PyObject* pd = plan && plan != Py_None ? dict_of(plan) : nullptr;
  PyObject* capsule = pd ? item(pd, s_guard) : nullptr;
  if (!capsule || !PyCapsule_IsValid(capsule, kCapsule)) Py_RETURN_NONE;
  Guard& g = *static_cast<Guard*>(PyCapsule_GetPointer(capsule, kCapsule));
  const at::Tensor x = THPVariable_Unpack(xo);
  if (!plainly_fused(g, md, x)) Py_RETURN_NONE;
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("mbv3::mobilenet_v3", "")
                             .typed<at::Tensor(const at::Tensor&, at::TensorList, at::IntArrayRef)>();
  at::Tensor y;
  {
    NoGil no_gil(capsule);  // another thread may refold and drop this plan meanwhile
    y = op.call(x, g.weights, g.spec);
  }
  return THPVariable_Wrap(std::move(y));
  END_HANDLE_TH_ERRORS
}

PyMethodDef kMethods[] = {
    {"_mobilenet_v3_guard", make_guard, METH_VARARGS, "The checks of a folded plan, for _mobilenet_v3_call."},
    {"_mobilenet_v3_call", call, METH_VARARGS,
     "_mobilenet_v3_call(model, x): the model's fused logits, or None where the ordinary call must decide."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

int add_mobilenet_v3_call_methods(PyObject* module) {
  for (auto [slot, name] : {std::pair{&s_training, "training"}, {&s_eps, "eps"}, {&s_plan, "_plan"},
                            {&s_guard, "guard"}, {&s_next_id, "next_id"},
                            {&s_compiled, "_compiled_call_impl"}}) {
    *slot = PyUnicode_InternFromString(name);
    if (!*slot) return -1;
  }
  return PyModule_AddFunctions(module, kMethods);
}

}  // namespace mbv3
