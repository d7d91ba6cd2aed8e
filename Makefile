# Thin wrappers around the CMake presets and scripts/. The default target builds dev.
#
#   make [build]     configure (once) and build build/dev
#   make run         bootstrap, build, serve on :8080 (make run ARGS="--config x.yaml")
#   make test        bootstrap, lint, dev + asan (ctest, pytest), node clients, fuzz
#                    (scripts/test; make test STEPS="dev asan" for a subset)
#   make lint        banned functions + clang-format check;  make fmt  reformats
#   make fuzz        build and run every libFuzzer target (FUZZ_SECONDS, default 10)
#   make bench       release build vs nginx, writes docs/benchmarks.md (bench/run)
#   make docs        docs/config.md from `sluice config-reference`
#   make release | asan | tsan   build that preset;  make clean
SHELL := /bin/bash
MAKEFLAGS += --no-print-directory
NPROC := $(shell nproc 2>/dev/null || echo 2)
ARGS ?=
STEPS ?=
C_FILES = find src tests -path '*/node_modules' -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print0

.PHONY: all build release asan tsan run test lint fmt fuzz bench docs clean bootstrap

all: build

# build/<preset> is configured only once; CMake re-configures itself when CMakeLists changes.
define build_preset
	@test -f build/$(1)/CMakeCache.txt || cmake --preset $(1)
	@cmake --build --preset $(1) -j$(NPROC)
endef

build:
	$(call build_preset,dev)

release:
	$(call build_preset,release)

asan:
	$(call build_preset,asan)

tsan:
	$(call build_preset,tsan)

bootstrap:
	@scripts/bootstrap

run:
	@[[ "$${SKIP_BOOTSTRAP:-0}" == 1 ]] || scripts/bootstrap
	@$(MAKE) --no-print-directory build
	exec build/dev/sluice serve $(ARGS)

test:
	@scripts/test $(STEPS)

lint:
	@scripts/lint

fmt:
	@$(C_FILES) | xargs -0 -r clang-format -i

fuzz:
	@SKIP_BOOTSTRAP=1 scripts/test fuzz

bench:
	@bench/run

docs: build
	@build/dev/sluice config-reference > docs/config.md.tmp && mv docs/config.md.tmp docs/config.md \
	    || { rm -f docs/config.md.tmp; exit 1; }
	@echo "wrote docs/config.md"

clean:
	rm -rf build
