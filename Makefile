# Two entry points, both idempotent on a fresh Debian/Ubuntu machine with Python 3.11:
#   make bench   the main job: installs, builds, runs the benchmarks
#   make test    installs, builds, runs the test suite
PY ?= python3
PIP = $(PY) -m pip install -q --disable-pip-version-check
# Pinned: the versions this project is tested with (pip's local cap allows no newer).
PY_DEPS = torch==2.14.1 torchvision==0.29.1 "setuptools>=77" ninja pytest pytest-benchmark hypothesis matplotlib
BUILT = mbv3_fast/.built

.PHONY: deps build test bench clean
deps:
	$(PIP) $(PY_DEPS)
	@# NEON is tested by cross-compiling and running under qemu; install the tools when root.
	@if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      g++-aarch64-linux-gnu qemu-user >/dev/null; \
	  else echo "not root: skipping apt install of g++-aarch64-linux-gnu qemu-user (NEON tests will skip)"; fi; \
	fi

# Rebuild the extension when its sources change: ninja recompiles only the objects whose
# sources or headers changed (one kernel .cpp: one object + the link).
$(BUILT): setup.py $(wildcard csrc/*/*.cpp csrc/*/*.h)
	$(PIP) --no-build-isolation --no-deps -e .
	@touch $@

build: deps $(BUILT)

test: build
	$(PY) -m pytest tests -q -ra

# The latency report: end to end (vs torchvision eager/compile and ONNX Runtime), per block, per
# op; fused vs unfused in the same run.  JSON under bench/results/, Markdown + PNG charts.
BENCH_DEPS = onnxruntime onnx
BENCH_FLAGS = -q -p no:cacheprovider --benchmark-max-time=0.2 --benchmark-min-rounds=5 \
  --benchmark-columns=median,iqr,rounds --benchmark-group-by=group --benchmark-sort=name
bench: build
	mkdir -p bench/results
	$(PIP) $(BENCH_DEPS)
	$(PY) -m pytest bench $(BENCH_FLAGS) -k "not interleaved" --benchmark-json=bench/results/latest.json
	$(PY) bench/summarize.py bench/results/latest.json --png bench/results | tee bench/results/latest.md

clean:
	rm -rf build *.egg-info mbv3_fast/_C*.so $(BUILT) tests/neon/build
