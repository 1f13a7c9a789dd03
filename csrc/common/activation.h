// Activation codes shared by the torch bindings and the torch-free kernels.
#pragma once

namespace mbv3 {
enum class Act : int { None = 0, Relu = 1, Hardswish = 2 };
}
