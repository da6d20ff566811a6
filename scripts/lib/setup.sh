# shellcheck shell=bash
# Sourced by scripts/up.sh and scripts/test.sh (from the repository root).
#
# cumulo_setup [EXTRA]  makes sure a Python >= 3.11 with venv and headers and the packages in
# CUMULO_APT_NEEDS are present (apt-get only for what is missing: `apt-get update` once, then
# install), then installs Cumulo (editable, plus the optional EXTRA: "client" or "test") into
# ./.venv.
# Debian's system pip is externally managed, hence the venv. A stamp in the venv makes a second
# run skip pip unless pyproject.toml changed.

cumulo_log() { printf '==> %s\n' "$*" >&2; }

_cumulo_python_ok() {
  command -v python3 >/dev/null 2>&1 && python3 - <<'PY' >/dev/null 2>&1
import os, sys, sysconfig
assert sys.version_info >= (3, 11)
import venv, ensurepip  # noqa: F401  (Debian ships ensurepip in python3-venv)
assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
PY
}

# What the host must have: "test:package" pairs; a test is a command name or an absolute path.
CUMULO_APT_NEEDS=(
  "gcc:gcc"
  "/bin/busybox:busybox-static" # the demo container image
  "runc:runc"                   # the container driver
  "ip:iproute2"                 # per-server network namespaces
  "nft:nftables"                # networks: security groups, router NAT (netplane)
  "dnsmasq:dnsmasq-base"        # networks: DHCP, one dnsmasq per network namespace (netplane)
  "qemu-system-x86_64:qemu-system-x86" # the QEMU driver
  "qemu-img:qemu-utils"         # VM disks: overlays, conversion, snapshots
  "mkfs.ext4:e2fsprogs"         # containers' root disks (mkfs.ext4, e2fsck, resize2fs)
  "criu:criu"                   # containers: suspend by checkpoint and live migration where `criu check` passes (reported in hypervisor show)
)

_cumulo_have() {
  case "$1" in
    /*) [ -x "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

_cumulo_missing() {
  local need
  _cumulo_python_ok || printf '%s\n' python3 python3-venv python3-dev
  for need in "${CUMULO_APT_NEEDS[@]}"; do
    _cumulo_have "${need%%:*}" || printf '%s\n' "${need#*:}"
  done
}

cumulo_system_deps() {
  local missing
  mapfile -t missing < <(_cumulo_missing)
  if [ "${#missing[@]}" = 0 ]; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "Cumulo needs these Debian packages (or their equivalents): ${missing[*]}; install them and rerun." >&2
    return 1
  fi
  local sudo=()
  if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
  cumulo_log "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
  # Debian starts a freshly installed database or broker as a system service: the test run uses
  # private instances of its own (scripts/services.py), so the packaged ones are stopped again.
  local pkg
  for pkg in "${missing[@]}"; do
    case "$pkg" in
      postgresql) "${sudo[@]}" /etc/init.d/postgresql stop >/dev/null 2>&1 || true ;;
      rabbitmq-server) "${sudo[@]}" /etc/init.d/rabbitmq-server stop >/dev/null 2>&1 || true ;;
    esac
  done
  mapfile -t missing < <(_cumulo_missing)
  if [ "${#missing[@]}" != 0 ]; then
    echo "still missing after apt-get install: ${missing[*]}" >&2
    return 1
  fi
}

cumulo_venv() {
  local extra="${1:-}" spec="." stamp want
  if [ -n "$extra" ]; then spec=".[${extra}]"; fi
  if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    cumulo_log "recreating a broken or too old .venv"
    rm -rf .venv
  fi
  if [ ! -x .venv/bin/python ]; then
    cumulo_log "creating .venv"
    python3 -m venv .venv
  fi
  stamp=".venv/.cumulo-installed-${extra:-base}"
  want="$(cat pyproject.toml)"
  want="$(printf '%s' "$want" | .venv/bin/python -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/cumulo ] \
     && .venv/bin/python -c 'import cumulo' 2>/dev/null; then
    return 0
  fi
  cumulo_log "installing Cumulo${extra:+ with [$extra]} into .venv"
  .venv/bin/python -m pip install --disable-pip-version-check --no-input --progress-bar off -q -e "$spec"
  printf '%s\n' "$want" >"$stamp"
}

cumulo_setup() {
  cumulo_system_deps
  cumulo_venv "${1:-}"
}
