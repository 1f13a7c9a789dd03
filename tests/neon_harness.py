"""Cross-compile an op's NEON kernel (the very file the ARM build compiles) with a small C++
main, run it under qemu-aarch64, and hand the results back to the test as tensors.

One binary per op, rebuilt only when its sources change; one qemu run per batch of cases.
"""
import functools
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
MISSING = [t for t in (CXX, QEMU) if shutil.which(t) is None]
requires_toolchain = pytest.mark.skipif(
    bool(MISSING), reason=f"NEON cross toolchain not installed ({', '.join(MISSING)}); "
                          "`make deps` as root installs g++-aarch64-linux-gnu and qemu-user")
# a53: the baseline ARMv8.0 core; a76: a modern phone/server core.  Both run every case.
QEMU_CPUS = ("cortex-a53", "cortex-a76")
# FEAT_BF16 (BFDOT), which neither of those has: qemu's "max" CPU.
QEMU_BF16_CPU = "max"


@functools.lru_cache(maxsize=None)
def build(op: str) -> Path:
    main = ROOT / "tests" / "neon" / f"{op}_main.cpp"
    # The op's NEON unit, and its FEAT_BF16 units where it has some (the BFDOT 1x1 kernel).
    srcs = [main, ROOT / "csrc" / op / f"{op}_neon.cpp", *sorted((ROOT / "csrc" / op).glob(f"{op}*_neon_bf16.cpp"))]
    flags = ["-O3", "-std=c++17", "-fno-math-errno", "-ffp-contract=off", f"-I{ROOT / 'csrc'}"]
    # The binary's key: the flags and every file the preprocessor reads (`-MM`), so an edit to a
    # torch-side header rebuilds nothing here.
    mm = subprocess.run([CXX, *flags, "-MM", *map(str, srcs)], check=True, capture_output=True, text=True)
    deps = sorted({Path(d) for d in mm.stdout.replace("\\\n", " ").split() if not d.endswith(":")})
    digest = hashlib.sha1(" ".join(flags).encode() + b"".join(p.read_bytes() for p in deps)).hexdigest()[:12]
    exe = ROOT / "tests" / "neon" / "build" / f"{op}-{digest}"
    if not exe.exists():
        exe.parent.mkdir(parents=True, exist_ok=True)
        # -O3 as setup.py builds it; -static so qemu needs no ARM sysroot.
        tmp = exe.with_suffix(".tmp")
        subprocess.run([CXX, *flags, "-static", *map(str, srcs), "-o", str(tmp)], check=True,
                       capture_output=True, text=True)
        tmp.replace(exe)  # atomic: a killed build leaves no half-written binary under the key
    return exe


class CaseFile:
    """Accumulates int64 headers and float32 arrays in the layout tests/neon/case_io.h reads."""

    def __init__(self):
        self.parts = []
        self.count = 0

    def i64(self, *values):
        self.parts.append(struct.pack(f"<{len(values)}q", *values))

    def floats(self, t: torch.Tensor):
        self.parts.append(t.detach().to(torch.float32).contiguous().numpy().tobytes())

    def bytes(self) -> bytes:
        return struct.pack("<q", self.count) + b"".join(self.parts)


def run(op: str, cases: CaseFile, cpu: str, bf16: bool = False, mode: str = "") -> torch.Tensor:
    """Run all cases; returns every output float concatenated (split by the caller).  bf16: the
    op's bf16 kernel runs instead (the inputs sent must already be bf16 values; the outputs
    come back widened, exactly).  mode: another kernel mode the harness offers ("k_pairs" for
    bf16; "panels" for the float 1x1 op)."""
    exe = build(op)
    with tempfile.TemporaryDirectory() as tmp:
        cin, cout = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
        Path(cin).write_bytes(cases.bytes())
        extra = [mode] if mode else ["bf16"] if bf16 else []
        subprocess.run([QEMU, "-cpu", cpu, str(exe), cin, cout] + extra, check=True, timeout=600,
                       capture_output=True, text=True)
        data = Path(cout).read_bytes()
    return torch.frombuffer(bytearray(data), dtype=torch.float32)


def expect_exact(flat: torch.Tensor, expected, label: str):
    """flat: a harness's outputs; expected: (reference tensor, description) per output in order.
    Each must match bit for bit, and nothing may be left over."""
    offset = 0
    for ref, what in expected:
        got = flat[offset:offset + ref.numel()].view(ref.shape)
        offset += ref.numel()
        assert torch.equal(got, ref), f"{label} {what}: {int((got != ref).sum())} of {ref.numel()} differ"
    assert offset == flat.numel(), f"{label}: {flat.numel() - offset} outputs past the expected ones"
