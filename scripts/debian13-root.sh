#!/usr/bin/env bash
# Prepares (once, then reuses) the Debian 13 (trixie) root the render and live tiers run their
# daemons from: Kamailio 6.0 with the IMS/Redis/presence modules, valkey-server 8.1, rtpengine
# 12.5 and SIPp 3.7, the minors the images ship (versions.env). The tests run these binaries
# with `chroot` inside a private mount namespace (tests/debian_root.py); nothing here starts a
# daemon or leaves a mount behind.
#
# The root is made by debootstrap from the mirror the machine's apt already uses and is pinned
# to what it was made with: the exact package versions go to $ROOT.versions, and a later run
# only checks them (never upgrades). A root whose minors differ from versions.env, or whose
# package list changed, is rebuilt.
#
# usage: scripts/debian13-root.sh          (makes or checks the root; prints its path last)
#        scripts/debian13-root.sh --path   (only prints the path the root has for this package list)
# env:   IMS_CORE_TOOLS  cache dir (default ~/.cache/ims-core-tools); the root is
#        $IMS_CORE_TOOLS/debian13-root-<id>, <id> a hash of the suite and package list, so
#        checkouts with different package lists never rebuild each other's root.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../versions.env
source "$here/../versions.env"

CACHE=${IMS_CORE_TOOLS:-$HOME/.cache/ims-core-tools}
SUITE=trixie

PACKAGES=(
  kamailio kamailio-ims-modules kamailio-redis-modules kamailio-presence-modules
  kamailio-extra-modules kamailio-utils-modules
  valkey-server valkey-tools rtpengine-daemon sip-tester
  busybox netbase socat ca-certificates
  postgresql-17
)
# package=minor the root must carry (checked after every build and every reuse).
WANTED=(
  "kamailio=$KAMAILIO_MINOR" "valkey-server=$VALKEY_MINOR" "rtpengine-daemon=$RTPENGINE_MINOR"
  "sip-tester=$SIPP_MINOR"
)

log() { printf '[debian13-root] %s\n' "$*"; }

mirror() {
  # The Debian mirror the machine's apt already uses (deb822 or one-line form).
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

package_list_id() { printf '%s\n' "$SUITE" "${PACKAGES[@]}" | sha256sum | cut -c1-16; }
ROOT=$CACHE/debian13-root-$(package_list_id)
STAMP=$ROOT.versions
if [ "${1:-}" = --path ]; then
  echo "$ROOT"
  exit 0
fi

# check_root: 0 if the root exists, was made from this package list and carries the wanted minors.
check_root() {
  [ -x "$ROOT/usr/sbin/kamailio" ] && [ -f "$STAMP" ] || return 1
  grep -qx "list $(package_list_id)" "$STAMP" || { log "package list changed"; return 1; }
  local want pkg minor have
  for want in "${WANTED[@]}"; do
    pkg=${want%%=*} minor=${want#*=}
    have=$(chroot "$ROOT" dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
    have=${have#*:}
    case "$have" in
      "$minor".*) ;;
      *) log "$pkg is '$have', versions.env wants $minor.x"; return 1 ;;
    esac
  done
  # Pinned: the root still holds exactly what it was made with.
  local now
  now=$(chroot "$ROOT" dpkg-query -W -f='${Package}=${Version}\n' "${PACKAGES[@]}" | sort)
  [ "$now" = "$(grep -v '^list ' "$STAMP")" ] || { log "packages differ from $STAMP"; return 1; }
}

if check_root; then
  log "reusing $ROOT"
  echo "$ROOT"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  log "needs root (debootstrap, chroot); run as root" >&2
  exit 1
fi
command -v debootstrap >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
}

mkdir -p "$CACHE"
exec {lock}>"$ROOT.lock"
flock "$lock"
if check_root; then
  log "reusing $ROOT (made by a concurrent run)"
  echo "$ROOT"
  exit 0
fi

t0=$SECONDS
work=$ROOT.new
rm -rf "$work" "$ROOT"
mkdir -p "$CACHE"
log "debootstrap $SUITE from $(mirror) (about 2.5 minutes) ..."
# The packages' maintainer scripts must not start daemons inside the root.
mkdir -p "$work/usr/sbin"
printf '#!/bin/sh\nexit 101\n' >"$work/usr/sbin/policy-rc.d"
chmod +x "$work/usr/sbin/policy-rc.d"
include=$(IFS=,; echo "${PACKAGES[*]}")
if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$work" "$(mirror)" >"$ROOT.log" 2>&1; then
  tail -n 30 "$ROOT.log" >&2
  rm -rf "$work"
  exit 1
fi
# Nothing of the host leaks in: the tests bind their own resolv.conf and hosts.
: >"$work/etc/resolv.conf"
[ -e "$work/etc/hosts" ] || printf "127.0.0.1 localhost\n" >"$work/etc/hosts"
rm -rf "$work/var/cache/apt/archives"/*.deb
mv "$work" "$ROOT"
{
  echo "list $(package_list_id)"
  chroot "$ROOT" dpkg-query -W -f='${Package}=${Version}\n' "${PACKAGES[@]}" | sort
} >"$STAMP"
if ! check_root; then
  log "the new root does not carry the minors versions.env names:" >&2
  cat "$STAMP" >&2
  exit 1
fi
printf '%s\t%s\t%ss\t%s\n' debian13-root "$SUITE" "$((SECONDS - t0))" "$(date -u +%FT%TZ)" >>"$CACHE/build-times.txt"
log "made $ROOT in $((SECONDS - t0))s:"
sed 's/^/  /' "$STAMP"
echo "$ROOT"
