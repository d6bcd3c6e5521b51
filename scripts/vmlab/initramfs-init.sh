#!/bin/busybox sh
# PID 1 inside the initramfs: load the few modules needed to see the host over
# 9p, build an overlay root (host / read-only + tmpfs on top), then hand over
# to guest-init.sh from the shared checkout. Module order comes from
# /modules.order, written by the host from modules.dep (dependencies first).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }
fail() { echo "vmlab-initramfs: $*"; echo o > /proc/sysrq-trigger; sleep 5; }

for m in $(cat /modules.order); do insmod "/modules/$m" || fail "insmod $m"; done

checkout="$(arg vmlab.checkout)"
kver="$(arg vmlab.kver)"
mkdir -p /lower /rw /newroot
# The host root never changes under a running lab, so caching it is safe and
# makes node startup several times faster under emulation.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /lower || fail "mount hostroot"
mount -t tmpfs -o size=256m tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "mount overlay"
mkdir -p "/newroot/lib/modules/$kver" "/newroot$checkout" /newroot/vmjob
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 modules "/newroot/lib/modules/$kver" || fail "mount modules"
# The checkout and the job share are written by both sides: no cache.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 checkout "/newroot$checkout" || fail "mount checkout"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 job /newroot/vmjob || fail "mount job"
umount /proc /sys /dev
exec switch_root /newroot /bin/bash "$checkout/scripts/vmlab/guest-init.sh"
