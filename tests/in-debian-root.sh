#!/bin/sh
# usage: in-debian-root.sh ROOT USERSPEC PROGRAM [ARG...]   (see tests/debian_root.py)
# Runs inside a private mount namespace (unshare --mount): the mounts below vanish with it.
set -e
root=$1 userspec=$2
shift 2
mount --bind /tmp "$root/tmp"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mkdir -p "$root/run/kamailio"
[ -z "$userspec" ] || chown "$userspec" "$root/run/kamailio"
for f in resolv.conf hosts; do
  [ -e "/etc/$f" ] && mount --bind "/etc/$f" "$root/etc/$f"
done
if [ -n "$userspec" ]; then
  exec chroot --userspec="$userspec" "$root" "$@"
fi
exec chroot "$root" "$@"
