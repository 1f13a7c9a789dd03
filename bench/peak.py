"""Per-core arithmetic peak of this CPU (one thread): AVX-512 and AVX2 fp32 FMA, AVX512_BF16
vdpbf16ps and AVX512_VNNI vpdpbusd (int8), 16 independent accumulators each (bench/peak/peak.c, built here with gcc).  The
figures the README's GFLOP/s and GOP/s columns are measured against.

    python bench/peak.py
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    flags = open("/proc/cpuinfo").read()
    if "avx2" not in flags:
        sys.exit("this CPU has neither AVX-512 nor AVX2: nothing to measure here")
    with tempfile.TemporaryDirectory() as d:
        exe = os.path.join(d, "peak")
        subprocess.run(["gcc", "-O3", "-o", exe, os.path.join(HERE, "peak", "peak.c")], check=True)
        # taskset: one core, as the kernels' single-thread figures.
        print(subprocess.run(["taskset", "-c", "0", exe], check=True, capture_output=True, text=True).stdout, end="")


if __name__ == "__main__":
    main()
