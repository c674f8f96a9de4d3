#!/usr/bin/env bash
# A dress rehearsal of `bench/gpu_device_run.sh run` on a developer machine (no GPU, root):
# the device script's launcher, package root and prerequisites on a root that has what the lent
# GPU machine has of this project's needs and no more — a Python with pip, a base system, no
# Slurm, munge, sshd, ip, ping or iperf3 — so that the few minutes of a lent machine are not
# spent finding a missing library.
#
#   bash bench/gpu_device_run.sh prep                    # the device's .whl/ and .debs/
#   WHL_DIR=.whl311 PY_VERSION=3.11 bash bench/gpu_device_run.sh prep \
#       pytest pluggy iniconfig packaging hypothesis attrs sortedcontainers PyYAML rich \
#       markdown-it-py mdurl Pygments execnet pytest-xdist nvidia-ml-py   # the same for the rehearsal root's Python
#   bash bench/device_rehearsal.sh [OUTDIR]
#
# The root is Debian 12 minbase with python3 and pip (debootstrap, cached in
# /var/lib/hpcv-rehearsal/root); this checkout is bound into it at /repo, and it becomes the root (pivot_root) of a private
# mount namespace. Inside, the device
# script's `rehearse` step provisions a local cluster (1 controller + 3 compute, two with
# simulated GPUs) through the overlaid packages and runs L1 network, L2 Slurm and L3 GRES/cgroup
# through the plugin. OUTDIR (default reports/rehearsal) gets what $OUT gets on the device.
# The GPU steps (gpu-real, faults, record) cannot run here: there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROOT=${REHEARSAL_ROOT:-/var/lib/hpcv-rehearsal/root}
OUTDIR=$(realpath -m "${1:-reports/rehearsal}")
[ "$(id -u)" = 0 ] || { echo "device_rehearsal.sh: run as root" >&2; exit 1; }
compgen -G ".whl311/*.whl" > /dev/null && compgen -G ".debs/*.deb" > /dev/null \
  || { echo "device_rehearsal.sh: run the two prep commands first (see the top of this file)" >&2; exit 1; }

if [ ! -x "$ROOT/usr/bin/python3" ]; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  rm -rf "$ROOT" && mkdir -p "$(dirname "$ROOT")"
  debootstrap --variant=minbase --include=python3,python3-pip bookworm "$ROOT" "${mirror:-http://deb.debian.org/debian}" > /dev/null
fi
rm -rf "$OUTDIR" && mkdir -p "$OUTDIR"
# the rehearsal cluster: configs/gpu-sim.yaml under a name, subnet and bridge of its own
sed -e 's/^name: .*/name: rehearsal/' -e 's#subnet: .*#subnet: 10.231.77.0/24#' -e 's/bridge: .*/bridge: hpcv-rehearse/' \
  configs/gpu-sim.yaml > "$OUTDIR/rehearsal.yaml"
echo "signoff: {required: [network, slurm, gres, cgroup]}  # no MPI compiler in the rehearsal root" >> "$OUTDIR/rehearsal.yaml"

start=$SECONDS
bash bench/in_root.sh "$ROOT" "$REPO" "$OUTDIR" \
  /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  OUT=/out WHL_DIR=.whl311 REHEARSAL_CONFIG=/out/rehearsal.yaml HPCV_PACKAGE_ROOT=/var/lib/hpcv-package-root \
  /bin/bash -c "cd /repo && bash bench/gpu_device_run.sh run rehearse"
echo "device_rehearsal.sh: $((SECONDS - start)) s; outputs in $OUTDIR"
