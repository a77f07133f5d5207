#!/usr/bin/env bash
# The test command: creates .venv, installs what the tiers need, runs every tier.
#   lint    ruff, hadolint, actionlint
#   unit    Pulumi mocks (no CLI)
#   render  every rendered file checked by its real consumer (kamailio -c, coredns, ...)
#   live    real Kamailio 6.0, Valkey 8.1, rtpengine 12.5 (the Debian 13 root, the versions the
#           images ship), CoreDNS, on 127.0.0.x in network namespaces, with SIPp 3.7 UEs
#   engine  the real Pulumi CLI against a local kube-apiserver with kwok nodes
#   node    the real program's pods on one real kubelet node (containerd, kube-proxy,
#           kube-router), in a network namespace of its own; SIPp UEs through the Services
#   vm      what needs Debian's own kernel (IPsec ESP on Gm) in a throwaway qemu VM (tests/vm)
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/unit -k pcscf`).
# Under CI=true a tier whose tools are missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export IMS_CORE_TOOLS=${IMS_CORE_TOOLS:-$HOME/.cache/ims-core-tools}
export PATH="$IMS_CORE_TOOLS/bin:$PWD/.venv/bin:$PATH"
[ -x /usr/local/go/bin/go ] && export PATH="$PATH:/usr/local/go/bin"

step() { printf '\n== %s\n' "$*"; }

step "Debian 12 packages (scripts/install-debian-packages.sh)"
if [ "$(id -u)" = 0 ]; then
  bash scripts/install-debian-packages.sh
else
  echo "not root: skipping apt; the live and render tiers need scripts/install-debian-packages.sh run as root"
fi

step "python venv (.venv from requirements-test.txt)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
want=$(sha256sum requirements.txt requirements-test.txt policy/requirements.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.requirements-stamp 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-test.txt
  echo "$want" >.venv/.requirements-stamp
else
  echo "up to date"
fi

step "Debian 13 root (Kamailio 6.0, Valkey 8.1, rtpengine 12.5, SIPp 3.7: versions.env)"
if [ "$(id -u)" = 0 ]; then
  bash scripts/debian13-root.sh
else
  echo "not root: the render and live tiers need scripts/debian13-root.sh run as root"
fi

step "vm tier image (Debian 13 kernel with ESP + the Debian 13 root, for qemu: scripts/vm-image.sh)"
if [ "$(id -u)" = 0 ]; then
  bash scripts/vm-image.sh
else
  echo "not root: the vm tier needs scripts/vm-image.sh run as root"
fi

step "Go-built tools (Pulumi CLI, kubernetes plugin, control plane, kwok, CoreDNS, actionlint)"
if command -v go >/dev/null; then
  bash scripts/bootstrap-tools.sh
else
  echo "no Go toolchain: the engine tier and the CoreDNS tests need scripts/bootstrap-tools.sh"
fi

step "tests"
# Paths among the arguments replace the default `tests` (every tier).
targets=(tests)
for arg in "$@"; do
  case $arg in -*) ;; *) [ ! -e "${arg%%::*}" ] || targets=() ;; esac
done
set +e
.venv/bin/python -m pytest "${targets[@]}" "$@"
status=$?
set -e
if [ "$status" -eq 0 ] && [ $# -eq 0 ] && [ -d benchmarks ]; then
  step "benchmarks (figures, not pass/fail)"
  # MariaDB and db_mysql for the Valkey-against-MariaDB figures: a layer over the Debian 13 root.
  [ "$(id -u)" != 0 ] || bash scripts/debian13-mariadb-layer.sh >/dev/null
  for bench in benchmarks/[!_]*.py; do
    .venv/bin/python "$bench" || status=$?
  done
fi
exit "$status"
