// The int8 model's fast call (mbv3_fast/quantization/model.py, QuantizedMobileNetV3.forward):
// mbv3::q8_mobilenet_v3 on the plan's (weights, spec, fspec) kept as C++ vectors.
//
// Why: called from Python, the op converts its ~285 tensors, ~860 ints and ~300 floats from
// Python lists on every call (~50 µs warm at batch 1, 2% of a 1-thread forward; more with the
// lists cold after a forward).  The plan is fixed once the model is built, so it is converted
// once here.
//
// _q8_mobilenet_v3_pack(weights, spec, fspec) -> capsule, kept by the model.
// _q8_mobilenet_v3_call(capsule, x) -> logits, or None where the Python op call must run (a
//   mode, tracing, autocast, autograd on x, not a plain CPU tensor): it routes those.
#include "q8_mobilenet_v3/q8_mobilenet_v3_call.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>

#include <memory>
#include <vector>

#include "common/fast_call.h"

namespace mbv3 {
namespace {

constexpr const char* kCapsule = "mbv3_fast.q8_mobilenet_v3_args";

struct Args {
  std::vector<at::Tensor> weights;
  std::vector<int64_t> spec;
  std::vector<double> fspec;
};

void free_args(PyObject* capsule) { delete static_cast<Args*>(PyCapsule_GetPointer(capsule, kCapsule)); }

// _q8_mobilenet_v3_pack(weights: list[Tensor], spec: list[int], fspec: list[float]) -> capsule
PyObject* pack(PyObject*, PyObject* args) {
  PyObject *weights, *spec, *fspec;
  if (!PyArg_ParseTuple(args, "O!O!O!", &PyList_Type, &weights, &PyList_Type, &spec, &PyList_Type, &fspec))
    return nullptr;
  auto a = std::make_unique<Args>();
  if (!tensors_from(weights, a->weights, "_q8_mobilenet_v3_pack: weights must be a list of tensors") ||
      !ints_from(spec, a->spec) || !floats_from(fspec, a->fspec))
    return nullptr;
  PyObject* capsule = PyCapsule_New(a.get(), kCapsule, free_args);
  if (capsule) a.release();
  return capsule;
}

// _q8_mobilenet_v3_call(capsule, x) -> Tensor or None
PyObject* call(PyObject*, PyObject* args) {
  HANDLE_TH_ERRORS
  PyObject *capsule, *xo;
  if (!PyArg_ParseTuple(args, "OO", &capsule, &xo)) return nullptr;
  if (!PyCapsule_IsValid(capsule, kCapsule)) {
    PyErr_SetString(PyExc_TypeError, "_q8_mobilenet_v3_call: expected the capsule of _q8_mobilenet_v3_pack");
    return nullptr;
  }
  if (!THPVariable_CheckExact(xo)) Py_RETURN_NONE;
  const at::Tensor x = THPVariable_Unpack(xo);
  if (!x.device().is_cpu() || !plain_dispatch(x)) Py_RETURN_NONE;
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mbv3::q8_mobilenet_v3", "")
          .typed<at::Tensor(const at::Tensor&, at::TensorList, at::IntArrayRef, at::ArrayRef<double>)>();
  const Args& a = *static_cast<const Args*>(PyCapsule_GetPointer(capsule, kCapsule));
  at::Tensor y;
  {
    NoGil no_gil(capsule);
    y = op.call(x, a.weights, a.spec, a.fspec);
  }
  return THPVariable_Wrap(std::move(y));
  END_HANDLE_TH_ERRORS
}

PyMethodDef kMethods[] = {
    {"_q8_mobilenet_v3_pack", pack, METH_VARARGS, "(weights, spec, fspec) of mbv3::q8_mobilenet_v3, converted once."},
    {"_q8_mobilenet_v3_call", call, METH_VARARGS,
     "_q8_mobilenet_v3_call(capsule, x): the int8 logits, or None where the Python op call must run."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

int add_q8_mobilenet_v3_call_methods(PyObject* module) { return PyModule_AddFunctions(module, kMethods); }

}  // namespace mbv3
