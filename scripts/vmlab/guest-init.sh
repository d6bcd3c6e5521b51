#!/bin/bash
# PID 1 of a lab VM after switch_root: the root is the host's / (read-only,
# tmpfs overlay). Sets up the basics, loads the kernel features the data plane
# uses, configures eth0 from the kernel command line, then serves jobs that
# the host drops into /vmjob (ID.sh -> ID.out, ID.err, ID.rc).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
# A fresh /tmp hides the host's; but a checkout that lives under /tmp (CI
# clones there) is mounted inside it, so then keep the overlay's /tmp.
case "$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^vmlab.checkout=//p')" in
  /tmp/*) ;;
  *) mount -t tmpfs tmpfs /tmp ;;
esac
# Without these links programs that poll /dev/stdin spin (seen at 65% CPU).
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
echo 1 > /proc/sys/kernel/sysrq

arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }
name="$(arg vmlab.name)"
hostname "$name"
modprobe -a ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_sh ip_vs_mh nf_conntrack nf_nat nf_tables \
  vxlan bridge veth br_netfilter 2> /vmjob/modprobe.err
ip link set lo up
ip link set eth0 up
ip addr add "$(arg vmlab.ip)" dev eth0
cd "$(arg vmlab.checkout)" || echo o > /proc/sysrq-trigger

# A fifo read with a timeout sleeps without forking a `sleep` per poll. Every
# pass reads the job dir over 9p: at 0.05 s that cost ~12% of an emulated CPU.
mkfifo /run/vmlab.tick
exec 9<> /run/vmlab.tick
touch /vmjob/ready
while true; do
  for job in /vmjob/*.sh; do
    [ -e "$job" ] || continue
    id="${job%.sh}"
    mv "$job" "$id.run" || continue
    ( bash "$id.run" > "$id.out" 2> "$id.err" < /dev/null; echo $? > "$id.rc.tmp"; mv "$id.rc.tmp" "$id.rc" ) &
  done
  read -t 0.2 -u 9 _
done
