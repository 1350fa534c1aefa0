#!/usr/bin/env bash
# Quickstart: installs what is missing, builds, and runs delegate end to end on the
# embedded defaults: a reference control plane (SQLite) and one agent on loopback over
# TLS 1.3, an API key, a sample incident runbook, its signed audit log printed and
# verified offline, one denied job, one tampered export. Leaves nothing running.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash packaging/install-deps.sh
BUILD="${DELEGATE_DEMO_BUILD:-$ROOT/build-demo}"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDELEGATE_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j2 --target delegate-agent delegate-controlplane delegate-audit
exec bash examples/demo-run.sh "$BUILD"
