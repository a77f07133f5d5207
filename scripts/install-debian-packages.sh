#!/usr/bin/env bash
# Installs the Debian 12 packages the render and live tiers run: Kamailio 5.6 with the IMS,
# Redis, presence, extra and utils modules, rtpengine (userspace), redis-server (the Valkey
# stand-in), SIPp, iproute2 and busybox (runs the image's readiness probe). Daemons are
# installed, never started: the tests start the ones they need on loopback and stop them by
# PID. Idempotent; needs root.
set -euo pipefail

PACKAGES=(
  kamailio kamailio-ims-modules kamailio-redis-modules kamailio-presence-modules
  kamailio-extra-modules kamailio-utils-modules
  rtpengine-daemon redis-server sip-tester iproute2 openssl socat busybox
  postgresql-15 postgresql-client-15
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
# Keep the packages' init scripts from starting kamailio/redis/rtpengine on the machine.
guard=/usr/sbin/policy-rc.d
created_guard=0
if [ ! -e "$guard" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod +x "$guard" && created_guard=1
fi
trap '[ "$created_guard" = 1 ] && rm -f "$guard"' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "[debian] done"
