#!/bin/sh
# PID 1 of the vm tier's guest (installed as /sbin/ims-vm-init by scripts/vm-image.sh).
# Mounts the two 9p shares the host gives (repo: the repository, read-only; work: the test's
# files in and results out), runs work/run.sh, leaves its exit status in work/rc and on the
# console, and powers the VM off. The VM has no network device: nothing leaves it.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mountpoint -q /run || mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm /run/netns
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
hostname ims-vm
for m in 9p 9pnet_virtio; do modprobe "$m"; done
rc=1
if mount -t 9p -o trans=virtio,version=9p2000.L,ro repo /ims/repo \
  && mount -t 9p -o trans=virtio,version=9p2000.L work /ims/work; then
  sh /ims/work/run.sh >/ims/work/run.log 2>&1
  rc=$?
  echo "$rc" >/ims/work/rc
  sync
  umount /ims/work
else
  echo "ims-vm: the 9p shares did not mount"
fi
echo "IMS-VM-RC=$rc"
echo o >/proc/sysrq-trigger
sleep 10
