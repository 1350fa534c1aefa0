#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite:
#   1. one clang build instrumented with ASan + UBSan and libFuzzer coverage, which gives both
#      the libFuzzer targets (each run briefly on its seed corpus) and the unit + integration
#      tests under the sanitizers: the product's code is compiled once for both. At -O0 with
#      line tables only: with this instrumentation clang takes about three times as long
#      at -O1, and a short fuzz run loses less to slower code than CI would to the build;
#   2. the regular build (g++, -O2 as it ships, without debug info: CI needs none, and it
#      costs a third of the compile time);
#   3. the Debian package's install/upgrade/remove/purge cycle (packaging/package-test.sh);
#   4. the container image, built with buildah and checked with podman (packaging/image.sh);
#   5. unit + integration tests on the regular build (its ctest summary closes the output).
# Exits non-zero on any failure. DELEGATE_FUZZ_SECONDS sets the per-target fuzz time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash packaging/install-deps.sh --test

JOBS=2
FUZZ_SECONDS="${DELEGATE_FUZZ_SECONDS:-12}"
# Each section's heading carries the minutes:seconds since the start, so a slow stage shows.
section() { printf '\n==== [%d:%02d] %s ====\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

section "sanitized build (clang-16: ASan + UBSan + libFuzzer coverage; fuzz targets and tests)"
CXX=clang++-16 cmake -S . -B build-san -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O0 -gline-tables-only" \
  -DDELEGATE_FUZZ=ON >/dev/null
cmake --build build-san -j"$JOBS"
FUZZERS=(job_parse_fuzz runbook_parse_fuzz record_parse_fuzz config_parse_fuzz jwt_parse_fuzz jwks_parse_fuzz
         seccomp_profile_fuzz export_verify_fuzz spool_block_fuzz masker_fuzz connect_parse_fuzz token_response_fuzz
         vault_response_fuzz metrics_request_fuzz connect_reply_fuzz)
for f in "${FUZZERS[@]}"; do
  name="${f%_fuzz}"
  corpus="tests/fuzz/corpus/${name%_parse}"
  work="$(mktemp -d)"
  cp -r "$corpus"/. "$work"/ 2>/dev/null || true
  section "fuzz: $f for ${FUZZ_SECONDS}s"
  "build-san/tests/fuzz/$f" -max_total_time="$FUZZ_SECONDS" -max_len=65536 -print_final_stats=1 "$work" 2>&1 | tail -n 4
  rm -rf "$work"
done

section "tests under ASan + UBSan"
(cd build-san && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest -j"$JOBS" --output-on-failure --timeout 300)

section "build (regular, with delegate-bench so that the benchmarks cannot rot unbuilt)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -DNDEBUG" \
  -DDELEGATE_BUILD_BENCH=ON >/dev/null
cmake --build build -j"$JOBS"

section "package: build the .deb, install, upgrade, remove, purge (packaging/package-test.sh)"
bash packaging/package-test.sh build

section "container image: build (buildah), --version, a sandboxed step, doctor (podman) (packaging/image.sh)"
bash packaging/image.sh test build

section "tests (regular build)"
cd build && ctest -j"$JOBS" --output-on-failure --timeout 300
