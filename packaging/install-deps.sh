#!/usr/bin/env bash
# Installs every Debian 12 package that delegate's build and demo need (with --test:
# also what the test suite needs).
# Idempotent: packages already present are left alone; apt-get runs only when
# something is missing.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates openssl
  libboost1.81-dev libboost-program-options1.81-dev
  libcurl4-openssl-dev libssl-dev
  nlohmann-json3-dev libseccomp-dev libsqlite3-dev sqlite3
  libyaml-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  curl python3
)
# The test suite also needs clang-16 + libFuzzer for the fuzz targets, bubblewrap
# as the sandbox benchmark's reference, and for the package test dpkg-dev
# (dpkg-shlibdeps), adduser, systemd (systemd-analyze) and lintian; for the image test
# buildah and podman with runc (crun refuses hybrid cgroup hosts) and uidmap; prometheus
# for promtool (`promtool check metrics` on both expositions; large, so only here).
if [ "${1:-}" = "--test" ]; then
  PKGS+=(clang-16 libfuzzer-16-dev libclang-rt-16-dev bubblewrap dpkg-dev adduser systemd lintian
         buildah podman runc uidmap prometheus)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
