"""Builds mbv3_fast and its C++ extension mbv3_fast._C with ninja (incremental: touching one
kernel .cpp recompiles that object and relinks).

csrc/<op>/ holds an op's torch-free interface (<op>.h), its kernel source (<op>_kernel.h), one
unit per CPU ISA (<op>_<isa>.cpp) and its torch binding (<op>_op.cpp); csrc/common/ the shared
pieces.  No file gets special flags: each ISA unit switches its instruction set on in the source
(#pragma GCC target, csrc/common/simd.h), so everything is compiled for the baseline and the
library loads on any x86-64 (or AArch64) CPU, picking the widest path it has at run time
(csrc/common/cpu_isa.cpp).

MBV3_FAST_SANITIZE=1 builds with -fsanitize=address,undefined (see the Makefile's test-asan); on an
x86 CPU without AVX-512 it leaves the AVX-512 units out.
"""
import glob
import os
import platform

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

X86 = platform.machine().lower() in ("x86_64", "amd64")
OTHER_ARCH = ("_avx512.cpp", "_avx512_bf16.cpp", "_avx512_vnni.cpp", "_avx2.cpp") if not X86 else ("_neon.cpp", "_neon_bf16.cpp")
SANITIZE = os.environ.get("MBV3_FAST_SANITIZE", "") not in ("", "0")

sources = sorted(s for s in glob.glob("csrc/**/*.cpp", recursive=True) if not s.endswith(OTHER_ARCH))
# -g0: Python's own CFLAGS carry -g, and debug info is ~40% of the unrolled kernels' compile time.
cxx_flags = ["-O3", "-g0", "-fopenmp", "-fno-math-errno", "-ffp-contract=off"]
link_flags = ["-fopenmp"] if os.name != "nt" else []  # at::parallel_for uses OpenMP


def _cpu_runs_avx512():
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        return True
    return all(f in flags for f in ("avx512f", "avx512bw", "avx512dq", "avx512vl"))


if SANITIZE:
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    # -g1: line tables for the reports, without full debug info's compile time.
    cxx_flags = ["-O1", "-g1", "-fopenmp", "-fno-math-errno", "-ffp-contract=off", *san]
    link_flags += san
    if X86 and not _cpu_runs_avx512():
        # A sanitized build exists to run the tests here: units this CPU cannot run are left out
        # (instrumented, they are the slowest to compile) and the dispatch knows (isa_dispatch.h).
        sources = [s for s in sources if not s.endswith(("_avx512.cpp", "_avx512_bf16.cpp", "_avx512_vnni.cpp"))]
        cxx_flags.append("-DMBV3_NO_AVX512")

setup(
    name="mbv3_fast",
    version="0.1.0",
    description="Fused MobileNetV3 kernels for PyTorch (CPU SIMD + Triton)",
    packages=["mbv3_fast", "mbv3_fast.ops", "mbv3_fast.kernels", "mbv3_fast.quantization"],
    ext_modules=[
        CppExtension(
            "mbv3_fast._C",
            sources,
            include_dirs=[os.path.abspath("csrc")],
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    ],
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.10",
    install_requires=["torch>=2.11", "torchvision"],
    extras_require={"test": ["pytest", "hypothesis"], "bench": ["pytest-benchmark", "matplotlib"]},
)
