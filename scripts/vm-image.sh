#!/usr/bin/env bash
# Prepares (once, then reuses) the VM the vm tier boots: Debian 13's own kernel, which has ESP
# (this machine's kernel has none), and a disk image of the Debian 13 root the other tiers use
# (scripts/debian13-root.sh: Kamailio 6.0, valkey-server 8.1, rtpengine 12.5, python3) plus
# linux-image-amd64 and iproute2 (`ip xfrm`, `ip netns`).
#
# The shared root is never touched: a copy of it gets the kernel, the copy becomes an ext4 image
# (`mkfs.ext4 -d`) and is then removed. The tests open the image with qemu's snapshot=on, so
# nothing a test does inside is written back. Output, in $IMS_CORE_TOOLS/vm/:
#   vmlinuz, initrd.img, root.ext4, versions (pinned: a later run only checks)
#
# A rebuild happens when the Debian 13 root changed (its stamp), when the package list here
# changed, or when an output is missing.
#
# usage: scripts/vm-image.sh          (prints the image directory on the last line)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${IMS_CORE_TOOLS:-$HOME/.cache/ims-core-tools}
OUT=$CACHE/vm
STAMP=$OUT/versions
IMAGE_SIZE=1600M

# Added to the copy of the Debian 13 root (iproute2 brings `ip xfrm`; kmod loads 9p and veth;
# python3-cryptography is what tests/doubles/milenage.py needs for the HSS double and the UE).
PACKAGES=(linux-image-amd64 iproute2 kmod initramfs-tools python3-cryptography)
# The guest's PID 1: mounts what it needs, runs the test's script from the 9p share, powers off.
INIT=$here/../tests/vm/guest-init.sh

log() { printf '[vm-image] %s\n' "$*"; }

root=$(bash "$here/debian13-root.sh" | tail -n1)

image_id() {
  { printf '%s\n' "${PACKAGES[@]}" "$IMAGE_SIZE"; cat "$root.versions" "$INIT"; } | sha256sum | cut -c1-16
}

check_image() {
  [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] && [ -f "$OUT/root.ext4" ] && [ -f "$STAMP" ] || return 1
  grep -qx "id $(image_id)" "$STAMP" || { log "inputs changed (Debian 13 root, package list or guest init)"; return 1; }
}

if check_image; then
  log "reusing $OUT"
  echo "$OUT"
  exit 0
fi
[ "$(id -u)" = 0 ] || { log "needs root (chroot, apt in the copy)" >&2; exit 1; }
command -v mkfs.ext4 >/dev/null || { log "mkfs.ext4 is missing (e2fsprogs)" >&2; exit 1; }

mkdir -p "$CACHE"
exec {lock}>"$CACHE/vm-image.lock"
flock "$lock"
if check_image; then
  log "reusing $OUT (made by a concurrent run)"
  echo "$OUT"
  exit 0
fi

t0=$SECONDS
work=$CACHE/vm-root.new
rm -rf "$work" "$OUT.new"
log "copying $root ..."
cp -a "$root" "$work"
# apt in the copy: its own mount namespace, so /proc and the resolver bind vanish with it.
log "installing ${PACKAGES[*]} into the copy ..."
unshare --mount --propagation private sh -euc '
  work=$1; shift
  mount -t proc proc "$work/proc"
  mount --bind /etc/resolv.conf "$work/etc/resolv.conf"
  mount -t tmpfs tmpfs "$work/tmp"
  chroot "$work" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive chroot "$work" apt-get install -y -qq --no-install-recommends "$@"
' sh "$work" "${PACKAGES[@]}" >"$CACHE/vm-image.log" 2>&1 || { tail -n 30 "$CACHE/vm-image.log" >&2; rm -rf "$work"; exit 1; }
rm -rf "$work/var/cache/apt/archives"/*.deb "$work/var/lib/apt/lists"/*_Packages
: >"$work/etc/resolv.conf"
install -m 0755 "$INIT" "$work/sbin/ims-vm-init"
mkdir -p "$work/ims/repo" "$work/ims/work"
printf '/dev/vda / ext4 rw 0 0\n' >"$work/etc/fstab"

mkdir -p "$OUT.new"
cp "$work"/boot/vmlinuz-* "$OUT.new/vmlinuz"
cp "$work"/boot/initrd.img-* "$OUT.new/initrd.img"
log "making the ext4 image ($IMAGE_SIZE) ..."
mkfs.ext4 -q -F -L ims-vm -d "$work" "$OUT.new/root.ext4" "$IMAGE_SIZE"
{
  echo "id $(image_id)"
  chroot "$work" dpkg-query -W -f='${Package}=${Version}\n' "${PACKAGES[@]}" | sort
  chroot "$work" sh -c 'ls /lib/modules'
} >"$OUT.new/versions"
rm -rf "$work" "$OUT"
mv "$OUT.new" "$OUT"
printf '%s\t%s\t%ss\t%s\n' vm-image "$(sed -n 's/^linux-image-amd64=//p' "$STAMP")" "$((SECONDS - t0))" "$(date -u +%FT%TZ)" >>"$CACHE/build-times.txt"
log "made $OUT in $((SECONDS - t0))s:"
sed 's/^/  /' "$STAMP"
echo "$OUT"
