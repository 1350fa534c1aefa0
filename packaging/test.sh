#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite:
#   1. libFuzzer targets (clang), each run briefly on its seed corpus;
#   2. unit + integration tests under AddressSanitizer and UndefinedBehaviorSanitizer;
#   3. the Debian package's install/upgrade/remove/purge cycle (packaging/package-test.sh);
#   4. unit + integration tests on the regular build (its ctest summary closes the output).
# Exits non-zero on any failure. DELEGATE_FUZZ_SECONDS sets the per-target fuzz time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash packaging/install-deps.sh --test

JOBS=2
FUZZ_SECONDS="${DELEGATE_FUZZ_SECONDS:-12}"
section() { printf '\n==== %s ====\n' "$*"; }

section "fuzz: build (clang-16, libFuzzer + ASan/UBSan)"
CXX=clang++-16 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDELEGATE_FUZZ=ON \
  -DDELEGATE_BUILD_TESTS=OFF >/dev/null
FUZZERS=(job_parse_fuzz runbook_parse_fuzz record_parse_fuzz config_parse_fuzz jwt_parse_fuzz jwks_parse_fuzz
         seccomp_profile_fuzz export_verify_fuzz spool_block_fuzz masker_fuzz connect_parse_fuzz token_response_fuzz
         vault_response_fuzz connect_reply_fuzz)
cmake --build build-fuzz -j"$JOBS" --target "${FUZZERS[@]}"
for f in "${FUZZERS[@]}"; do
  name="${f%_fuzz}"
  corpus="tests/fuzz/corpus/${name%_parse}"
  work="$(mktemp -d)"
  cp -r "$corpus"/. "$work"/ 2>/dev/null || true
  section "fuzz: $f for ${FUZZ_SECONDS}s"
  "build-fuzz/tests/fuzz/$f" -max_total_time="$FUZZ_SECONDS" -max_len=65536 -print_final_stats=1 "$work" 2>&1 | tail -n 4
  rm -rf "$work"
done

section "tests under ASan + UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDELEGATE_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$JOBS"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest -j"$JOBS" --output-on-failure --timeout 600)

section "build (regular)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS"

section "package: build the .deb, install, upgrade, remove, purge (packaging/package-test.sh)"
bash packaging/package-test.sh build

section "tests (regular build)"
cd build && ctest -j"$JOBS" --output-on-failure --timeout 600
