#!/usr/bin/env bash
# Installs the Debian 12 packages the test command needs on the machine itself: iproute2
# (network namespaces), openssl (the engine tier's PKI) and debootstrap (scripts/debian13-root.sh
# makes the Debian 13 root from which the render and live tiers run Kamailio 6.0, Valkey 8.1,
# rtpengine 12.5 and SIPp 3.7, the versions the images ship). The vm tier adds qemu-system-x86
# (software emulation, no KVM) and e2fsprogs (scripts/vm-image.sh: mkfs.ext4 -d). The render tier
# adds freeDiameterd 1.2.1 with its extensions (it loads the rendered open5gs freeDiameter .conf
# files; installed without starting it). The node tier adds containerd, runc and the CNI plugins
# (the container runtime of its one real node) and iptables, ipset and conntrack (what
# kube-proxy and kube-router call); the node tier starts its own containerd in namespaces of its
# own and stops it by PID. python3-venv: the test command's .venv (a minimal Debian 12 lacks
# ensurepip). No daemon runs on the machine itself. Idempotent; needs root.
set -euo pipefail

PACKAGES=(
  python3-venv iproute2 openssl debootstrap util-linux qemu-system-x86 e2fsprogs freediameterd freediameter-extensions
  containerd runc containernetworking-plugins iptables ipset conntrack
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[debian] all ${#PACKAGES[@]} packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "[debian] missing: ${missing[*]}; run this script as root (apt-get install)" >&2
  exit 1
fi

echo "[debian] installing: ${missing[*]}"
# Keep freediameterd's init script and containerd's unit from starting a daemon on the machine.
guard=/usr/sbin/policy-rc.d
created_guard=0
if [ ! -e "$guard" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod +x "$guard" && created_guard=1
fi
trap '[ "$created_guard" = 1 ] && rm -f "$guard"' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "[debian] done"
