#!/usr/bin/env bash
# The plugin against the current Debian release's stack (Debian 13 "trixie": Slurm 24.11, munge
# 0.5.16, Open MPI 5 / PMIx 5, OpenSSH 10, MariaDB 11.8, Prometheus, GlusterFS 11, Python 3.13),
# where the development machines run Debian 12's (Slurm 22.05). A real cluster is more likely to
# run the newer one; the seed project deploys Slurm 24.11.
#
#   bash bench/compat_debian13.sh [OUTDIR] [CONFIG] [SUITE...]   # as root; default: configs/full-stack.yaml, suites/
#   bash bench/compat_debian13.sh OUTDIR --tests TEST...          # the project's own tests there (e.g. tests/faults)
#   bash bench/compat_debian13.sh OUTDIR --run COMMAND...         # any command there (output in OUTDIR/run.txt)
#
# A Debian 13 root (debootstrap minbase plus the local provider's packages, as setup.sh installs
# them on Debian 12; cached in /var/lib/hpcv-compat/trixie, ~1 GB, ~3 min the first time) becomes
# the root (pivot_root) of a private mount namespace with this checkout bound at /repo. Inside,
# the plugin runs from /repo/src on Python 3.13 with its dependencies installed from wheels
# downloaded here for 3.13 (cached), provisions the config's local cluster with Debian 13's
# programs and runs the suites through pytest (the config renamed: HPCV_COMPAT_NAME, default compat13,
# on HPCV_COMPAT_SUBNET, default 10.231.79.0/24; HPCV_COMPAT_THRESHOLDS, JSON, overrides thresholds).
# OUTDIR (default reports/compat-debian13) gets
# pytest's output (pytest.txt), the junit XML and the run's reports. The exit code is pytest's.
# Nothing of the cluster is left: the provider tears it down and `cleanup` runs after it.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BASE=${HPCV_COMPAT_DIR:-/var/lib/hpcv-compat}
ROOT=$BASE/trixie
OUTDIR=$(realpath -m "${1:-reports/compat-debian13}")
CONFIG=${2:-configs/full-stack.yaml}
shift $(( $# > 2 ? 2 : $# ))
PATHS=("$@"); [ ${#PATHS[@]} -gt 0 ] || PATHS=(suites)
[ "$(id -u)" = 0 ] || { echo "compat_debian13.sh: run as root" >&2; exit 1; }
[ -x .venv/bin/python ] || { echo "compat_debian13.sh: run 'bash setup.sh' first (its pip downloads the wheels)" >&2; exit 1; }

# what setup.sh installs on Debian 12, less the host-side tools (libvirt, Chromium, Java, Node)
PACKAGES=(python3 python3-venv gcc make libc6-dev
  slurmctld slurmd slurm-client munge slurmdbd mariadb-server
  openmpi-bin libopenmpi-dev libpmix-dev
  openssh-server openssh-client sudo
  prometheus prometheus-node-exporter prometheus-alertmanager curl
  fio iperf3 iputils-ping iproute2 bridge-utils iptables hwloc procps psmisc util-linux kmod
  glusterfs-server glusterfs-client charliecloud-runtime runc
  python3-libvirt xxd libfaketime)  # for the project's own tests: libvirt's test driver, xxd in a redaction test
# the plugin's dependencies (pyproject.toml), for the root's Python
REQUIREMENTS=(pytest pytest-xdist pytest-testinfra paramiko nvidia-ml-py hypothesis allure-pytest
  "pydantic>=2.6,<3" ClusterShell rich PyYAML prometheus-client)

stamp() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
in_root() {  # in_root COMMAND...: a chroot with /proc and /dev, for apt and pip (not for the cluster)
  unshare --mount --propagation private -- /bin/sh -c '
    r=$0; mount -t proc proc "$r/proc"; mount --rbind /dev "$r/dev"; exec chroot "$r" "$@"' "$ROOT" "$@"
}

mkdir -p "$BASE"
exec 9> "$BASE/.build.lock"
flock 9  # one build of the root at a time; released before the cluster runs
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  echo "compat_debian13.sh: debootstrap trixie into $ROOT"
  rm -rf "$ROOT.tmp" && mkdir -p "$BASE"
  debootstrap --variant=minbase --include=python3 trixie "$ROOT.tmp" "${mirror:-http://deb.debian.org/debian}" > "$BASE/debootstrap.log"
  mv "$ROOT.tmp" "$ROOT"
fi
if [ "$(cat "$ROOT/.hpcv-packages" 2>/dev/null)" != "$(stamp "${PACKAGES[@]}")" ]; then
  echo "compat_debian13.sh: installing Debian 13 packages in the root"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  # policy-rc.d: the packages' scripts start no daemon (munged, slurmd, mariadb, ...) in the root
  printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d" && chmod +x "$ROOT/usr/sbin/policy-rc.d"
  in_root /usr/bin/apt-get update -qq
  in_root /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" > "$BASE/apt.log"
  in_root /usr/bin/apt-get clean
  rm -f "$ROOT/usr/sbin/policy-rc.d"
  stamp "${PACKAGES[@]}" > "$ROOT/.hpcv-packages"
fi
WHEELS=$BASE/wheels-3.13
if [ "$(cat "$ROOT/opt/hpcv-venv/.hpcv-requirements" 2>/dev/null)" != "$(stamp "${REQUIREMENTS[@]}" system-site)" ]; then
  echo "compat_debian13.sh: wheels for Python 3.13 and the root's virtual environment"
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  .venv/bin/python -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version 3.13 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$WHEELS" "${REQUIREMENTS[@]}" 2>&1 | { grep -v '^WARNING: Location' || true; }
  rm -rf "$ROOT/opt/hpcv-venv" "$ROOT/opt/wheels" && cp -r "$WHEELS" "$ROOT/opt/wheels"
  in_root /usr/bin/python3 -m venv --system-site-packages /opt/hpcv-venv  # python3-libvirt: no wheel on PyPI
  in_root /opt/hpcv-venv/bin/python -m pip install -q --no-index --find-links /opt/wheels "${REQUIREMENTS[@]}"
  rm -rf "$ROOT/opt/wheels"
  stamp "${REQUIREMENTS[@]}" system-site > "$ROOT/opt/hpcv-venv/.hpcv-requirements"
fi
# the plugin from /repo/src, installed as pip -e would (a path entry and its entry points), so that
# the pytest runs the project's tests start (pytester) find it too
site=$(echo "$ROOT"/opt/hpcv-venv/lib/python3*/site-packages)
echo /repo/src > "$site/hpcv-repo.pth"
mkdir -p "$site/pytest_hpcvalidate-0+repo.dist-info"
printf 'Metadata-Version: 2.1\nName: pytest-hpcvalidate\nVersion: 0+repo\n' > "$site/pytest_hpcvalidate-0+repo.dist-info/METADATA"
printf '[pytest11]\nhpcvalidate = pytest_hpcvalidate.plugin\n\n[console_scripts]\nhpcvalidate = pytest_hpcvalidate.__main__:main\n' \
  > "$site/pytest_hpcvalidate-0+repo.dist-info/entry_points.txt"

flock -u 9
rm -rf "$OUTDIR" && mkdir -p "$OUTDIR"
case "$CONFIG" in
  --tests) ARGS=(pytest --junitxml /out/junit.xml "${PATHS[@]}") ;;
  --run) ARGS=(run "${PATHS[@]}") ;;
  *) ARGS=(pytest --hpc-config /out/compat.yaml --hpc-report-dir /out/reports --junitxml /out/junit.xml "${PATHS[@]}") ;;
esac
# the config under a name, subnet and bridge of its own, and without job accounting: Debian 13's
# slurmdbd 24.11.5 cannot create its database through Debian 13's client library (libmariadb3
# 1:11.8.9: "5027 Number of columns in result (=1) set execeeds maxmimum allowed number of columns
# (=0)" on its first query; with Debian 12's libmariadb3 it starts), so the provider would stop there
[[ "$CONFIG" = --* ]] || .venv/bin/python - "$CONFIG" "$OUTDIR/compat.yaml" "${HPCV_COMPAT_SUBNET:-10.231.79.0/24}" "${HPCV_COMPAT_NAME:-compat13}" \
  "${HPCV_COMPAT_THRESHOLDS:-{\}}" <<'PY'
import json, sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
config["thresholds"] = {**config.get("thresholds", {}), **json.loads(sys.argv[5])}  # HPCV_COMPAT_THRESHOLDS
config.update(name=sys.argv[4], description=f"{config.get('name')} on Debian 13 (bench/compat_debian13.sh)")
config["network"].update(subnet=sys.argv[3], bridge=f"hpcv-{sys.argv[4]}"[:15])
config.get("slurm", {}).pop("accounting", None)
yaml.safe_dump(config, open(sys.argv[2], "w"), sort_keys=False)
PY
in_root /bin/sh -c 'grep PRETTY /etc/os-release; dpkg-query -W -f "\${Package} \${Version}\n" slurmd munge openmpi-bin \
  "libpmix2*" openssh-server mariadb-server prometheus prometheus-node-exporter prometheus-alertmanager glusterfs-server \
  charliecloud-runtime runc fio iperf3 python3' > "$OUTDIR/versions.txt" 2>&1 || true
start=$SECONDS
set +e
bash bench/in_root.sh "$ROOT" "$REPO" "$OUTDIR" /bin/bash -euc '
  mode=$1; shift
  cd /repo
  rc=0
  run=(env -i PATH=/opt/hpcv-venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
       PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1)
  if [ "$mode" = run ]; then "${run[@]}" "$@" > /out/run.txt 2>&1 || rc=$?
  else "${run[@]}" python -m pytest -p no:cacheprovider -rfEs "$@" > /out/pytest.txt 2>&1 || rc=$?; fi
  env -i PATH=/opt/hpcv-venv/bin:/usr/sbin:/usr/bin:/sbin:/bin python -m pytest_hpcvalidate cleanup >> /out/pytest.txt 2>&1
  exit $rc
' compat "${ARGS[@]}"
rc=$?
echo "compat_debian13.sh: exit $rc after $((SECONDS - start)) s; $(tail -1 "$OUTDIR/pytest.txt" 2>/dev/null)"
echo "compat_debian13.sh: outputs in $OUTDIR"
exit $rc
