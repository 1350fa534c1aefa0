#!/usr/bin/env bash
# The agent's container image (packaging/Containerfile), built with buildah from an
# already built tree, without a Docker daemon and without pulling any base image.
#
#   packaging/image.sh build [BUILD_DIR] [TAG]   stage, build, tag (default
#       localhost/delegate-agent:VERSION) in the host's container storage
#   packaging/image.sh test [BUILD_DIR]          stage and build in a private storage
#       root under a temporary directory, check the image with podman (--version, one
#       sandboxed step with the flags docs/install.md names, the same step failing
#       closed without them), print the compressed size, and remove everything.
#       Skips, saying why, where buildah/podman/runc are missing or cannot run.
#
# BUILD_DIR defaults to ./build and must hold agent/delegate-agent and
# audit/delegate-audit. The image's libraries are the build host's (Debian 12):
# `ldd` resolves them, `dpkg -S` names their packages in the image's manifest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-}"
[ "$MODE" = build ] || [ "$MODE" = test ] || { echo "usage: $0 build|test [BUILD_DIR] [TAG]" >&2; exit 2; }
BUILD="$(cd "${2:-$ROOT/build}" && pwd)"
VERSION="$(sed -n 's/^project(delegate VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")"
TAG="${3:-localhost/delegate-agent:$VERSION}"
WORK="$(mktemp -d)"
cleanup_store=""
# Two host paths the tools use whatever their configuration says: runc's state
# directory and containers/image's blob-info cache. Removed afterwards if this run
# made them.
HOST_LEFTOVERS=()
for d in /run/runc /var/lib/containers; do [ -e "$d" ] || HOST_LEFTOVERS+=("$d"); done
cleanup() {
  if [ -n "$cleanup_store" ]; then
    # vfs layers are plain directories, some with modes only root can pass: let
    # podman unmount and delete them before the directory goes.
    podman system reset --force >/dev/null 2>&1 || true
    for d in "${HOST_LEFTOVERS[@]}"; do rm -rf "$d"; done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

skip() { echo "image test SKIPPED: $*"; exit 0; }

# --- stage the build context: CONTEXT/rootfs is the image's file tree ---------------
stage() {
  local ctx="$1" fs="$1/rootfs"
  mkdir -p "$fs/usr/bin" "$fs/etc/ssl/certs" "$fs/etc/delegate/runbooks" "$fs/var/lib/delegate" "$fs/tmp" \
           "$fs/usr/share/doc/delegate"
  chmod 1777 "$fs/tmp"
  chmod 0700 "$fs/var/lib/delegate"
  local manifest="$fs/usr/share/doc/delegate/image-manifest.txt" libs=()
  echo "# delegate $VERSION container image: binaries, and each library with the Debian package it came from" >"$manifest"
  for b in agent/delegate-agent audit/delegate-audit; do
    [ -x "$BUILD/$b" ] || { echo "image: $BUILD/$b is missing: build it first" >&2; exit 1; }
    install -m 0755 "$BUILD/$b" "$fs/usr/bin/"
    strip --strip-unneeded "$fs/usr/bin/$(basename "$b")"
    echo "/usr/bin/$(basename "$b")  delegate $VERSION" >>"$manifest"
    # "libx.so => /path (addr)" and the loader's "/lib64/ld-linux-x86-64.so.2 (addr)";
    # a "not found" line means the binary cannot run, in the image or here.
    if ldd "$BUILD/$b" | grep -q 'not found'; then ldd "$BUILD/$b" >&2; exit 1; fi
    mapfile -t -O "${#libs[@]}" libs < <(ldd "$BUILD/$b" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
  done
  # libcurl is loaded on the first HTTP call (dlopen), so ldd of the binaries does not
  # list it: add it and what it needs.
  local curl
  # The copy in the directory the binaries' own libc comes from: a multiarch host lists
  # other architectures' copies too.
  local libdir
  libdir="$(dirname "$(ldd "$BUILD/agent/delegate-agent" | awk '$1 == "libc.so.6" {print $3}')")"
  curl="$libdir/libcurl.so.4"
  [ -f "$curl" ] || curl=""
  [ -n "$curl" ] || { echo "image: libcurl.so.4 not found on this host" >&2; exit 1; }
  libs+=("$curl")
  mapfile -t -O "${#libs[@]}" libs < <(ldd "$curl" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
  # One dpkg -S for all of them (it is slow per call). dpkg knows a file by the path
  # its package installed, which usrmerge may have moved (/lib vs /usr/lib): ask for
  # the resolved path, the same without /usr, and the path ldd printed.
  local lib real pkg cands=() line
  local -A owner=()
  mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)
  for lib in "${libs[@]}"; do
    real="$(readlink -f "$lib")"
    cands+=("$real" "${real#/usr}" "$lib")
  done
  while IFS= read -r line; do
    owner["${line#*: }"]="${line%%:*}"
  done < <(dpkg -S "${cands[@]}" 2>/dev/null | grep -v ', ' || true)
  local -A version=()
  while read -r pkg line; do version["$pkg"]="$line"; done < <(dpkg-query -W -f='${Package} ${Version}\n' "${owner[@]}")
  for lib in "${libs[@]}"; do
    mkdir -p "$fs$(dirname "$lib")"
    cp -L "$lib" "$fs$lib"
    real="$(readlink -f "$lib")"
    pkg="${owner[$real]:-${owner[${real#/usr}]:-${owner[$lib]:-}}}"
    if [ -n "$pkg" ]; then
      echo "$lib  $pkg ${version[${pkg%%:*}]:-}" >>"$manifest"
      if [ -f "/usr/share/doc/$pkg/copyright" ]; then
        mkdir -p "$fs/usr/share/doc/$pkg" && cp "/usr/share/doc/$pkg/copyright" "$fs/usr/share/doc/$pkg/"
      fi
    else
      echo "$lib  (no Debian package)" >>"$manifest"
    fi
  done
  cp "$ROOT/packaging/debian/copyright" "$fs/usr/share/doc/delegate/copyright"
  [ -f /etc/ssl/certs/ca-certificates.crt ] || { echo "image: /etc/ssl/certs/ca-certificates.crt missing (ca-certificates)" >&2; exit 1; }
  cp /etc/ssl/certs/ca-certificates.crt "$fs/etc/ssl/certs/"
  echo "/etc/ssl/certs/ca-certificates.crt  ca-certificates $(dpkg-query -W -f='${Version}' ca-certificates)" >>"$manifest"
  # root: the agent (uid 0 of the container's user namespace); delegate and nobody:
  # step users (sandbox.step_user), never root.
  cat >"$fs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
delegate:x:10001:10001:delegate steps:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
  cat >"$fs/etc/group" <<'EOF'
root:x:0:
delegate:x:10001:
nogroup:x:65534:
EOF
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$fs/etc/nsswitch.conf"
  chmod 0644 "$fs/etc/passwd" "$fs/etc/group" "$fs/etc/nsswitch.conf"
  cp "$ROOT/packaging/Containerfile" "$ctx/Containerfile"
}

build_image() {  # build_image CONTEXT TAG [buildah global options...]
  local ctx="$1" tag="$2"; shift 2
  buildah "$@" build --quiet --runtime runc --network none --layers=false --build-arg "VERSION=$VERSION" \
    -f "$ctx/Containerfile" -t "$tag" "$ctx" >/dev/null
}

if [ "$MODE" = build ]; then
  stage "$WORK/ctx"
  build_image "$WORK/ctx" "$TAG"
  echo "built $TAG"
  exit 0
fi

# --- test ----------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || skip "it needs root (podman with uid maps and a private storage root)"
for tool in buildah podman runc; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (packaging/install-deps.sh --test installs it)"
done

# A private storage root, runroot and configuration: nothing outside $WORK is used or
# left behind, and the host's own containers.conf/storage.conf do not matter.
STORE="$WORK/store"
mkdir -p "$STORE/root" "$STORE/run" "$STORE/tmp"
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$STORE/root"
runroot = "$STORE/run"
EOF
cat >"$WORK/containers.conf" <<EOF
[containers]
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$STORE/events.log"
tmp_dir = "$STORE/tmp"
volume_path = "$STORE/root/volumes"
EOF
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf" CONTAINERS_CONF="$WORK/containers.conf"
export TMPDIR="$STORE/tmp"
cleanup_store=1

stage "$WORK/ctx"
if ! build_image "$WORK/ctx" "$TAG" 2>"$WORK/build.log"; then
  # A host that cannot run containers at all (no runc-usable cgroups, no overlay of
  # namespaces) fails the build's RUN step: say so, do not fail the suite.
  if grep -qi 'runc\|cgroup\|namespace\|operation not permitted' "$WORK/build.log"; then
    sed 's/^/      buildah| /' "$WORK/build.log" | tail -n 5
    skip "buildah cannot run a container on this host (see above)"
  fi
  cat "$WORK/build.log" >&2
  echo "image build FAILED" >&2
  exit 1
fi

fails=0
check() {  # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then echo "ok    $what"; else echo "FAIL  $what"; fails=$((fails + 1)); fi
}
has_line() { grep -q -- "$2" <<<"$1" || { echo "      no line matching: $2"; printf '%s\n' "$1" | sed 's/^/      | /' | tail -n 8; return 1; }; }

# The flags every run needs here: runc (the host's cgroup layout), rlimits podman's
# defaults would otherwise set beyond what this kernel allows a user namespace.
RUN=(podman run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
# What the step sandbox needs (docs/install.md, "Container image").
SANDBOX=(--uidmap 0:100000:65536 --gidmap 0:100000:65536
         --security-opt "seccomp=$ROOT/packaging/seccomp-podman.json"
         --security-opt unmask=/proc/*)

size="$(podman save --format oci-archive "$TAG" 2>/dev/null | gzip -9 | wc -c)"
echo "image $TAG: $((size / 1024)) KiB compressed (oci-archive | gzip -9)"
check "image under 30 MB compressed" test "$size" -lt $((30 * 1024 * 1024))
check "no shell in the image" bash -c "! ${RUN[*]} --entrypoint /bin/sh $TAG -c true >/dev/null 2>&1"

set +e
out="$("${RUN[@]}" "$TAG" --version 2>&1)"
set -e
check "delegate-agent --version in the container" has_line "$out" "^delegate-agent $VERSION\$"

# One sandboxed step: the agent runs its own binary as a step, in new user, pid, mount,
# net, ipc, uts and cgroup namespaces, as nobody, under seccomp.
set +e
out="$("${RUN[@]}" "${SANDBOX[@]}" "$TAG" sandbox-run --timeout 20 -- /usr/bin/delegate-agent --version 2>&1)"
rc=$?
set -e
check "a sandboxed step runs in the container (exit $rc)" has_line "$out" "^delegate-agent $VERSION\$"

printf '%s\n' "$out" | sed 's/^/      step| /'

# Without the flags (podman's default seccomp profile, masked /proc, no user
# namespace of its own) the same step must fail closed: exit 125 and a reason.
set +e
out="$("${RUN[@]}" "$TAG" sandbox-run --timeout 20 -- /usr/bin/delegate-agent --version 2>&1)"
rc=$?
set -e
check "without the sandbox flags the step fails closed (exit $rc, want 125)" test "$rc" = 125
check "... with a reason" has_line "$out" "^sandbox-run: "
echo "      reason: $(grep -m1 '^sandbox-run: ' <<<"$out" || true)"

# doctor in the container names what the runtime refuses, and passes the launch checks
# with the flags (plus the capabilities steps with egress need).
set +e
out="$("${RUN[@]}" "$TAG" doctor --config /nonexistent.yaml 2>&1)"
set -e
check "doctor without the flags: sandbox launch FAIL, naming sethostname" \
  has_line "$out" '^FAIL  sandbox launch: .*sethostname.*docs/install.md'
check "doctor without the flags: egress network namespace FAIL" has_line "$out" '^FAIL  egress network namespace: '
set +e
out="$("${RUN[@]}" "${SANDBOX[@]}" --cap-add SYS_ADMIN,NET_ADMIN "$TAG" doctor --config /nonexistent.yaml 2>&1)"
set -e
check "doctor with the flags: sandbox launch ok" has_line "$out" '^ok    sandbox launch: '
check "doctor with the flags and caps: egress network namespace ok" has_line "$out" '^ok    egress network namespace: '
grep -E '^(ok|FAIL)  (cgroup|user namespaces|seccomp|mount_setattr)' <<<"$out" | cut -c1-110 | sed 's/^/      doctor| /'

if [ "$fails" != 0 ]; then
  echo "image test: $fails check(s) FAILED"
  exit 1
fi
echo "image test: all checks passed"
