#!/bin/sh
# A task for the VM cluster test: busybox httpd (node would cost seconds of
# emulated CPU per start) serving one line naming the VM it runs on and its
# task ID, so the test sees which VM's task answered. $1 is a run marker: it
# is in the served directory's path, so the test finds the task's process by it.
dir="/tmp/$1-$MESHD_TASK_ID"
mkdir -p "$dir"
echo "$(cat /proc/sys/kernel/hostname) $MESHD_TASK_ID" > "$dir/index.html"
exec busybox httpd -f -p 80 -h "$dir"
