#!/usr/bin/env bash
# bash bench/in_root.sh ROOT REPO OUT COMMAND...: COMMAND with ROOT as the root of a new private
# mount namespace (pivot_root), REPO bound at /repo and OUT at /out, /dev, /sys, /proc and a
# fresh /run inside. The device rehearsal and the Debian 13 run use it.
#
# pivot_root, not chroot: the local provider enters its nodes with setns(), which resets a
# process's root to its mount namespace's root, so ROOT must be that root (as / is on a machine).
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: in_root.sh ROOT REPO OUT COMMAND..." >&2; exit 2; }
exec unshare --mount --propagation private -- /bin/bash -euc '
  root=$1 repo=$2 out=$3; shift 3
  mount --bind "$root" "$root"
  mount --rbind /dev "$root/dev"; mount --rbind /sys "$root/sys"; mount -t proc proc "$root/proc"
  mount -t tmpfs -o mode=755 tmpfs "$root/run"; mkdir -p "$root/repo" "$root/out" "$root/.oldroot"
  mount --bind "$repo" "$root/repo"; mount --bind "$out" "$root/out"
  cd "$root" && pivot_root . .oldroot && umount -l /.oldroot
  cd /
  exec "$@"
' in_root "$@"
