# Two entry points, both idempotent on a fresh Debian/Ubuntu machine with Python 3.11:
#   make bench   the main job: installs, builds, runs the benchmarks
#   make test    installs, builds, runs the test suite
PY ?= python3
PIP = $(PY) -m pip install -q --disable-pip-version-check
# Pinned: the versions this project is tested with (pip's local cap allows no newer).
PY_DEPS = torch==2.14.1 torchvision==0.29.1 "setuptools>=77" ninja pytest pytest-benchmark hypothesis matplotlib
BUILT = mbv3_fast/.built

.PHONY: deps build test test-asan test-gpu-compile bench clean
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

# Every Triton kernel of the CUDA path compiled for sm_90 and sm_80 over the whole grid (Large and
# Small, batch 1/32/256, fp32/fp16/bf16, both layouts): no GPU needed (make test runs a subset).
test-gpu-compile: build
	MBV3_GPU_COMPILE_FULL=1 $(PY) -m pytest tests/test_gpu_compile.py -q -rs -k full_grid

# The C++ ops under AddressSanitizer + UndefinedBehaviorSanitizer: a copy of the sources under
# build/asan/tree is built there with MBV3_FAST_SANITIZE=1 (setup.py), so the normal in-place
# extension is never overwritten, and the op tests (odd shapes, non-finite values, thread
# splits, the fuzzers) run against it.  Python is not instrumented, hence LD_PRELOAD.  Any
# report fails the run (-fno-sanitize-recover, halt_on_error).  Incremental: tar keeps mtimes.
ASAN_TREE = build/asan/tree
ASAN_TESTS = tests/test_dwconv_bn_act.py tests/test_pwconv_bn_act.py tests/test_expand_dwconv_bn_act.py \
  tests/test_se.py tests/test_conv_bn_act.py tests/test_classifier_head.py tests/test_mobilenet_v3.py \
  tests/test_nonfinite.py tests/test_threads.py tests/test_fuzz.py \
  tests/test_q8_pwconv_act.py tests/test_q8_dwconv_act.py tests/test_q8_conv_act.py tests/test_q8_se.py \
  tests/test_q8_classifier_head.py
ASAN_ENV = LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
  ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
test-asan: deps
	mkdir -p $(ASAN_TREE)
	tar -cf - --exclude='*.so' --exclude=tests/neon/build --exclude=__pycache__ --exclude=mbv3_fast/.built \
	  setup.py csrc mbv3_fast tests | tar -xf - -C $(ASAN_TREE)
	cd $(ASAN_TREE) && MBV3_FAST_SANITIZE=1 $(PY) setup.py -q build_ext --inplace
	cd $(ASAN_TREE) && $(ASAN_ENV) $(PY) -m pytest $(ASAN_TESTS) -q -p no:cacheprovider -k "not neon and not triton"
	@# the models' fast calls in C (mobilenet_v3_call.cpp, q8_mobilenet_v3_call.cpp): hooks,
	@# refolds, modes, threads, collection
	cd $(ASAN_TREE) && $(ASAN_ENV) $(PY) -m pytest tests/test_model.py tests/test_q8_mobilenet_v3.py -q \
	  -p no:cacheprovider -k fast_call

# The latency report: end to end (vs torchvision eager/compile and ONNX Runtime), per block, per
# op; fused vs unfused in the same run.  JSON under bench/results/, Markdown + PNG charts.
# Peer engines (executorch runs on the installed torch; it does not replace it).
BENCH_DEPS = onnxruntime onnx openvino executorch
BENCH_FLAGS = -q -p no:cacheprovider --benchmark-max-time=0.2 --benchmark-min-rounds=5 \
  --benchmark-columns=median,iqr,rounds --benchmark-group-by=group --benchmark-sort=name
bench: build
	mkdir -p bench/results
	$(PIP) $(BENCH_DEPS)
	$(PY) -m pytest bench $(BENCH_FLAGS) -k "not interleaved" --benchmark-json=bench/results/latest.json
	$(PY) bench/summarize.py bench/results/latest.json --png bench/results | tee bench/results/latest.md

clean:
	rm -rf build *.egg-info mbv3_fast/_C*.so $(BUILT) tests/neon/build
