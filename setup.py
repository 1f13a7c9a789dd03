"""Builds mbv3_fast and its C++ extension mbv3_fast._C.

Each per-ISA kernel file (csrc/*_<isa>.cpp) is compiled with that ISA's flags only; everything
else is compiled for the baseline, so the library loads on any x86-64 (or AArch64) CPU and
picks the widest path the CPU has at run time (csrc/cpu_isa.cpp).
"""
import glob
import os
import platform

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

X86 = platform.machine().lower() in ("x86_64", "amd64")
ISA_FLAGS = {
    "_avx512.cpp": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma"],
    "_avx2.cpp": ["-mavx2", "-mfma"],
    "_neon.cpp": [],  # Advanced SIMD is baseline on AArch64
    "_scalar.cpp": [],
}
SKIP = ("_avx512.cpp", "_avx2.cpp") if not X86 else ("_neon.cpp",)


class BuildPerIsa(BuildExtension):
    """Adds a source file's ISA flags when (and only when) that file is compiled."""

    def build_extensions(self):
        compile_one = self.compiler._compile

        def _compile(obj, src, ext, cc_args, extra_postargs, pp_opts):
            extra = [f for suffix, flags in ISA_FLAGS.items() if src.endswith(suffix) for f in flags]
            return compile_one(obj, src, ext, cc_args, list(extra_postargs) + extra, pp_opts)

        self.compiler._compile = _compile
        super().build_extensions()


sources = sorted(s for s in glob.glob("csrc/*.cpp") if not s.endswith(SKIP))
cxx_flags = ["-O3", "-fopenmp", "-fno-math-errno", "-ffp-contract=off"]

setup(
    name="mbv3_fast",
    version="0.1.0",
    description="Fused MobileNetV3 kernels for PyTorch (CPU SIMD + Triton)",
    packages=["mbv3_fast", "mbv3_fast.ops", "mbv3_fast.kernels"],
    package_dir={"mbv3_fast.kernels": "kernels"},
    ext_modules=[
        CppExtension(
            "mbv3_fast._C",
            sources,
            depends=sorted(glob.glob("csrc/*.h")),  # a header edit rebuilds every object
            extra_compile_args={"cxx": cxx_flags},
            # at::parallel_for uses OpenMP in PyTorch's CPU builds.
            extra_link_args=["-fopenmp"] if os.name != "nt" else [],
        )
    ],
    cmdclass={"build_ext": BuildPerIsa.with_options(use_ninja=False)},
    python_requires=">=3.10",
    install_requires=["torch>=2.11", "torchvision"],
    extras_require={"test": ["pytest", "hypothesis"], "bench": ["pytest-benchmark", "matplotlib"]},
)
