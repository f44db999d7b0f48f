# The two commands a newcomer needs: `make run` and `make test` (see README.md).
SHELL := /bin/bash
BUILD_DIR ?= build
ASAN_DIR  ?= build-asan
JOBS      ?= $(shell nproc)
PYTEST    := /usr/bin/python3 -m pytest

# Debian 12 packages: toolchain, libraries, and the real servers tests and `make run` start.
DEB_PACKAGES := build-essential cmake ccache pkg-config libuv1-dev node-llhttp libyaml-cpp-dev \
  libhiredis-dev libpq-dev zlib1g-dev libbrotli-dev libzstd-dev libssl-dev doctest-dev rapidjson-dev \
  postgresql-15 pgbouncer redis-server python3 python3-pytest python3-yaml curl procps prometheus \
  chromium brotli zstd gzip openssl
BENCH_PACKAGES := wrk nghttp2-client nginx-light haproxy valgrind linux-perf strace brotli

.PHONY: all deps bench-deps build asan run test unit integration bench bench-app fuzz clean deploy-check

all: build

# Idempotent: installs only what dpkg says is missing.
deps:
	@scripts/install-deps.sh $(DEB_PACKAGES)
	@tests/deploy/install-deps.sh

bench-deps:
	@scripts/install-deps.sh $(BENCH_PACKAGES)

$(BUILD_DIR)/build.ninja $(BUILD_DIR)/Makefile:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD_DIR)/Makefile
	cmake --build $(BUILD_DIR) -j $(JOBS)

$(ASAN_DIR)/Makefile:
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=ON

# ASan + UBSan build running the same unit and integration tests. A 4 MiB quarantine keeps
# use-after-free detection while letting the streaming tests' RSS bound measure our buffers
# rather than ASan's (the default 256 MiB quarantine alone exceeds it).
ASAN_RUNTIME := detect_leaks=1:quarantine_size_mb=4
asan: deps $(ASAN_DIR)/Makefile
	cmake --build $(ASAN_DIR) -j $(JOBS)
	ASAN_OPTIONS=$(ASAN_RUNTIME) UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(ASAN_DIR)/tests/unit_tests
	SIDECAR_BUILD_DIR=$(ASAN_DIR) ASAN_OPTIONS=$(ASAN_RUNTIME) UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(PYTEST) -q tests/integration

unit: build
	$(BUILD_DIR)/tests/unit_tests

integration: build
	SIDECAR_BUILD_DIR=$(BUILD_DIR) $(PYTEST) -q tests/integration

# Release build tests, then the same tests on the ASan + UBSan build.
test: build
	scripts/test.sh
	$(MAKE) --no-print-directory asan

run: build
	scripts/run.sh

bench: build bench-deps
	bench/run.sh

# upstream_app direct and through the gateway against the real data stack (upstream_app/README.md).
bench-app: build bench-deps
	/usr/bin/python3 upstream_app/bench/app_bench.py

# libFuzzer targets (clang, ASan + UBSan) in build-fuzz: regressions replayed, then 5 min per target.
FUZZ_PACKAGES := clang libclang-rt-14-dev
fuzz: deps
	@scripts/install-deps.sh $(FUZZ_PACKAGES)
	scripts/fuzz.sh $${FUZZ_SECONDS:-300}

# Offline checks of deploy/ (kustomize render + Kubernetes schemas + pod policy).
deploy-check: deps
	tests/deploy/check.sh

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
