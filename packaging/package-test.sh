#!/usr/bin/env bash
# The Debian package's life cycle on this machine, as root: build it with cpack from a
# configured and built tree, install it (over a lower "previous" version first), check
# files, modes and the delegate user, run `delegate-agent --version` and `doctor`, check
# the systemd units (verify, security), upgrade and reinstall keeping configuration
# edits and state, remove (configuration and state kept), purge (all gone). Leaves the
# machine as it found it. Usage: packaging/package-test.sh [BUILD_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"

if [ "$(id -u)" != 0 ]; then
  echo "package test SKIPPED: it installs a package and needs root"
  exit 0
fi
# Never touch an installation this test did not make.
if dpkg-query -W -f='${Status}' delegate 2>/dev/null | grep -q installed || getent passwd delegate >/dev/null ||
   [ -e /etc/delegate ] || [ -e /var/lib/delegate ]; then
  echo "package test: a delegate installation (package, user, /etc/delegate or /var/lib/delegate) already exists; refusing" >&2
  exit 1
fi

WORK="$(mktemp -d)"
cleanup() {
  if dpkg-query -W -f='${Status}' delegate 2>/dev/null | grep -q 'ok installed\|config-files'; then
    dpkg --purge delegate >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fails=0
check() {  # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then echo "ok    $what"; else echo "FAIL  $what"; fails=$((fails + 1)); fi
}
mode_is() { [ "$(stat -c '%a %U:%G' "$1")" = "$2" ] || { echo "      $1 is $(stat -c '%a %U:%G' "$1"), want $2"; return 1; }; }
absent() { [ ! -e "$1" ] || { echo "      $1 still exists"; return 1; }; }
has_line() { grep -q -- "$2" <<<"$1" || { echo "      no line matching: $2"; return 1; }; }

version="$(sed -n 's/^project(delegate VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")"
echo "package test: delegate $version from $BUILD"
(cd "$BUILD" && cpack -G DEB -B "$WORK/cur" >"$WORK/cpack.log" 2>&1) || { cat "$WORK/cpack.log"; exit 1; }
(cd "$BUILD" && cpack -G DEB -B "$WORK/prev" -D CPACK_PACKAGE_VERSION="${version}~prev" >>"$WORK/cpack.log" 2>&1) ||
  { cat "$WORK/cpack.log"; exit 1; }
cur="$(ls "$WORK"/cur/delegate_*.deb)"
prev="$(ls "$WORK"/prev/delegate_*.deb)"
echo "built $(basename "$cur") ($(du -k "$cur" | cut -f1) KiB) and $(basename "$prev")"
check "package version is the project version" test "$(dpkg-deb -f "$cur" Version)" = "$version"
check "depends on adduser and the shared libraries" has_line "$(dpkg-deb -f "$cur" Depends)" 'adduser.*libssl3\|libssl3.*adduser'
check "agent.yaml and the runbooks are conffiles" has_line "$(dpkg-deb -e "$cur" "$WORK/ctl" && cat "$WORK/ctl/conffiles")" '/etc/delegate/agent.yaml'

if command -v lintian >/dev/null; then
  check "lintian: no errors" bash -c "lintian --fail-on error '$cur' 2>/dev/null | sed 's/^/      lintian| /'; test \${PIPESTATUS[0]} = 0"
else
  echo "      lintian not installed: its check SKIPPED"
fi

install_deb() { dpkg -i "$1" >"$WORK/dpkg.log" 2>&1 || { apt-get install -y --no-install-recommends "$1" >>"$WORK/dpkg.log" 2>&1; }; }

# 1. Fresh install of the previous version.
check "install $(basename "$prev")" install_deb "$prev"
for b in delegate-agent delegate-controlplane delegate-audit; do check "/usr/bin/$b installed" test -x "/usr/bin/$b"; done
check "agent unit installed" test -f /lib/systemd/system/delegate-agent.service
check "control-plane unit installed" test -f /lib/systemd/system/delegate-controlplane.service
check "approved runbooks installed" test -f /etc/delegate/runbooks/host-diagnostics.yaml
check "delegate system user, no shell" has_line "$(getent passwd delegate)" '^delegate:x:[0-9]*:[0-9]*:.*:/var/lib/delegate:/usr/sbin/nologin$'
check "delegate group" bash -c "getent group delegate >/dev/null"
check "/etc/delegate 0750 root:delegate" mode_is /etc/delegate "750 root:delegate"
check "agent.yaml 0640 root:delegate" mode_is /etc/delegate/agent.yaml "640 root:delegate"
check "spool key 0600 root:root" mode_is /etc/delegate/spool.key "600 root:root"
check "spool key holds 32 bytes" test "$(stat -c %s /etc/delegate/spool.key)" = 32
check "/var/lib/delegate 0710 root:delegate" mode_is /var/lib/delegate "710 root:delegate"
check "agent state 0700 root:root" mode_is /var/lib/delegate/agent "700 root:root"
check "control-plane state 0700 delegate:delegate" mode_is /var/lib/delegate/controlplane "700 delegate:delegate"

# 2. The installed binaries.
check "delegate-agent --version" has_line "$(delegate-agent --version)" "^delegate-agent $version\$"
set +e
doctor="$(delegate-agent doctor --config /etc/delegate/agent.yaml 2>&1)"
doctor_rc=$?
set -e
echo "$doctor" | sed 's/^/      doctor| /'
check "doctor exits 1 (control plane not configured yet)" test "$doctor_rc" = 1
for c in config "user namespaces" "cgroup memory" "cgroup pids" "cgroup cpu" seccomp mount_setattr "sandbox launch" "runbook catalog" \
         "mode of spool key" "mode of state_dir"; do
  check "doctor: $c ok" has_line "$doctor" "^ok    $c: "
done
check "doctor: control plane named as failing" has_line "$doctor" '^FAIL  control plane TLS: https://controlplane.example.invalid:8443: unreachable'
check "doctor: missing enrollment token named" has_line "$doctor" '^FAIL  mode of enrollment token: /etc/delegate/enrollment.token does not exist'

# 3. The units: systemd-analyze verify (warnings count as failures) and security.
for u in delegate-agent delegate-controlplane; do
  check "systemd-analyze verify $u" bash -c "systemd-analyze verify --man=no /lib/systemd/system/$u.service 2>$WORK/verify-$u.log && ! test -s $WORK/verify-$u.log || { cat $WORK/verify-$u.log; false; }"
  score="$(systemd-analyze security --offline=true --no-pager "/lib/systemd/system/$u.service" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')"
  echo "      $u exposure: $score"
done
check "agent unit exposure at most 5.0" awk -v s="$(systemd-analyze security --offline=true --no-pager /lib/systemd/system/delegate-agent.service 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')" 'BEGIN { exit !(s != "" && s <= 5.0) }'
check "control-plane unit exposure at most 2.0" awk -v s="$(systemd-analyze security --offline=true --no-pager /lib/systemd/system/delegate-controlplane.service 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')" 'BEGIN { exit !(s != "" && s <= 2.0) }'

# 4. Site edits and state, then upgrade to the current build and reinstall it.
sed -i 's/^  name: unnamed-agent$/  name: edited-agent/' /etc/delegate/agent.yaml
echo "# local edit" >>/etc/delegate/agent.yaml
(umask 077 && echo "enroll-token-from-site" >/etc/delegate/enrollment.token)
# The unit's credential wiring: its LoadCredential= sources copied into a stand-in for
# $CREDENTIALS_DIRECTORY (mode 0400, as systemd makes them) and its Environment= lines
# with %d expanded; doctor must then judge the credential copies.
mkdir -m 0700 "$WORK/creds"
env_args=()
while IFS= read -r line; do
  case "$line" in
    LoadCredential=*) spec="${line#LoadCredential=}"; install -m 0400 "${spec#*:}" "$WORK/creds/${spec%%:*}" ;;
    Environment=*) env_args+=("${line#Environment=}") ;;
  esac
done </lib/systemd/system/delegate-agent.service
env_args=("${env_args[@]//%d/$WORK/creds}")
creds_doctor="$(env "${env_args[@]}" delegate-agent doctor --config /etc/delegate/agent.yaml 2>&1 || true)"
check "unit credentials: doctor reads the enrollment token from the credentials directory" \
  has_line "$creds_doctor" "^ok    mode of enrollment token: $WORK/creds/enrollment-token mode 0400"
check "unit credentials: doctor reads the spool key from the credentials directory" \
  has_line "$creds_doctor" "^ok    mode of spool key: $WORK/creds/spool-key mode 0400"
key_before="$(delegate-agent identity --config /etc/delegate/agent.yaml)"
spool_before="$(sha256sum </etc/delegate/spool.key)"
for step in "upgrade to $(basename "$cur")" "reinstall $(basename "$cur") over itself"; do
  check "$step" install_deb "$cur"
  check "  $step: version $version installed" test "$(dpkg-query -W -f='${Version}' delegate)" = "$version"
  check "  $step: agent.yaml edits kept" grep -q '^  name: edited-agent$' /etc/delegate/agent.yaml
  check "  $step: agent.yaml still 0640 root:delegate" mode_is /etc/delegate/agent.yaml "640 root:delegate"
  check "  $step: enrollment token kept" grep -q enroll-token-from-site /etc/delegate/enrollment.token
  check "  $step: spool key unchanged" test "$(sha256sum </etc/delegate/spool.key)" = "$spool_before"
  check "  $step: identity (state) kept" test "$(delegate-agent identity --config /etc/delegate/agent.yaml)" = "$key_before"
done

# 5. Remove: binaries go, configuration, state and user stay.
check "dpkg -r delegate" bash -c "dpkg -r delegate >$WORK/dpkg.log 2>&1"
check "  remove: binaries gone" absent /usr/bin/delegate-agent
check "  remove: units gone" absent /lib/systemd/system/delegate-agent.service
check "  remove: agent.yaml kept" grep -q '^  name: edited-agent$' /etc/delegate/agent.yaml
check "  remove: state kept" test -f /var/lib/delegate/agent/identity.key
check "  remove: user kept" bash -c "getent passwd delegate >/dev/null"

# 6. Reinstall after remove picks the kept configuration up; then purge.
check "install after remove" install_deb "$cur"
check "  kept agent.yaml in use" grep -q '^  name: edited-agent$' /etc/delegate/agent.yaml
check "dpkg --purge delegate" bash -c "dpkg --purge delegate >$WORK/dpkg.log 2>&1"
check "  purge: /etc/delegate gone" absent /etc/delegate
check "  purge: /var/lib/delegate gone" absent /var/lib/delegate
check "  purge: user gone" bash -c '! getent passwd delegate'
check "  purge: group gone" bash -c '! getent group delegate'
check "  purge: package gone" bash -c "! dpkg-query -W -f='\${Status}' delegate 2>/dev/null | grep -q installed"

if [ "$fails" -ne 0 ]; then
  echo "package test: $fails check(s) FAILED"
  exit 1
fi
echo "package test: all checks passed"
