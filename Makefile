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
  chromium brotli zstd gzip openssl valgrind
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

# ThreadSanitizer build (the gateway runs one event loop per thread) running the same unit and
# integration tests; not part of `make test` (about 7 min). Reports go to files, so a race in a
# process whose exit code a test does not check still fails the run. tests/tsan.supp holds
# third-party false positives only.
TSAN_DIR ?= build-tsan
TSAN_REPORTS = $(abspath $(TSAN_DIR))/tsan-reports
TSAN_RUNTIME = halt_on_error=0:exitcode=66:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp:log_path=$(TSAN_REPORTS)/tsan
.PHONY: tsan soak
$(TSAN_DIR)/Makefile:
	cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSANITIZE=thread
tsan: deps $(TSAN_DIR)/Makefile
	cmake --build $(TSAN_DIR) -j $(JOBS)
	@rm -rf $(TSAN_REPORTS); mkdir -p $(TSAN_REPORTS); status=0; \
	  TSAN_OPTIONS=$(TSAN_RUNTIME) $(TSAN_DIR)/tests/unit_tests || status=1; \
	  SIDECAR_BUILD_DIR=$(TSAN_DIR) TSAN_OPTIONS=$(TSAN_RUNTIME) $(PYTEST) -q tests/integration || status=1; \
	  if ls $(TSAN_REPORTS)/tsan.* >/dev/null 2>&1; then cat $(TSAN_REPORTS)/tsan.*; \
	    echo "make tsan: ThreadSanitizer reports above (files in $(TSAN_REPORTS))" >&2; status=1; fi; \
	  exit $$status

# Soak (not in CI): SOAK_SECONDS (default 30 min) of mixed traffic through the full stack with a
# fault every minute; errors per fault window, RSS and open fds over time (CSV + gnuplot PNG in
# $(BUILD_DIR)/soak). `make test` runs a 60-second version without the plot (scripts/test.sh).
SOAK_SECONDS ?= 1800
soak: build
	@scripts/install-deps.sh gnuplot-nox
	/usr/bin/python3 scripts/soak.py --seconds $(SOAK_SECONDS) --build-dir $(BUILD_DIR) --out $(BUILD_DIR)/soak

unit: build
	$(BUILD_DIR)/tests/unit_tests

integration: build
	SIDECAR_BUILD_DIR=$(BUILD_DIR) $(PYTEST) -q tests/integration

# Release build tests, then the same tests on the ASan + UBSan build.
test: build
	scripts/test.sh
	$(MAKE) --no-print-directory fuzz-smoke
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

# `make test`'s fuzz stage: every saved regression input once, then FUZZ_SMOKE_SECONDS of fuzzing
# per target, one target per CPU. On two cores: under 2 min of fuzzing, and a build of 2.5 min
# cold (seconds with a warm ccache). Any crash or broken property fails `make test`.
FUZZ_SMOKE_SECONDS ?= 15
.PHONY: fuzz-smoke
fuzz-smoke: deps
	@scripts/install-deps.sh $(FUZZ_PACKAGES)
	scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS)

# Offline checks of deploy/ (kustomize render + Kubernetes schemas + pod policy).
deploy-check: deps
	tests/deploy/check.sh

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR)
