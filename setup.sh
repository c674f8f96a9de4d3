#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for pytest-hpcvalidate (run as root):
#   - the Debian packages the local provider runs for real (Slurm, munge, Open MPI/PMIx, sshd, fio, iperf3, ...)
#   - a virtual environment in .venv with the plugin installed (editable) and its Python dependencies
# Idempotent: packages already installed are not fetched again; a second run takes a second or two.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages; the local provider creates namespaces and cgroups)" >&2
  exit 1
fi

PACKAGES=(
  python3 python3-venv python3-dev gcc make
  slurmctld slurmd slurm-client munge slurmdbd mariadb-server
  openmpi-bin libopenmpi-dev libpmix-dev
  openssh-server openssh-client sudo
  prometheus prometheus-node-exporter prometheus-alertmanager curl
  fio iperf3 iputils-ping iproute2 bridge-utils iptables hwloc procps psmisc util-linux
  glusterfs-server glusterfs-client bindfs libfaketime
  chromium default-jre-headless nodejs
  charliecloud-runtime runc
  libvirt-daemon-system qemu-system-x86 qemu-utils dnsmasq-base debootstrap busybox-static kmod e2fsprogs libvirt-dev pkg-config
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt-get update -qq
  # policy-rc.d keeps package scripts from starting munged/slurmd/sshd on the host
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[libvirt]' 2>&1 | grep -v -e '^WARNING: Location' -e '^$' || true
.venv/bin/python -c "import pytest_hpcvalidate.plugin, pytest" || { echo "setup.sh: the Python install failed" >&2; exit 1; }
# libvirt provider: no systemd here, so start libvirt's daemons (and give /dev/kvm udev's owner/mode,
# without which libvirt re-probes QEMU on every domain start); the provider does the same on demand
.venv/bin/python -c "from pytest_hpcvalidate.providers.libvirt.host import ensure_libvirtd; ensure_libvirtd('qemu:///system')" \
  || echo "setup.sh: warning: libvirtd could not be started (the libvirt provider will say why)" >&2
# the Allure HTML report (python -m pytest_hpcvalidate report): Allure's own generator from npm, on Java (Debian's default: 17 on 12, 21 on 13),
# in .tools/ of this checkout (npm only when nodejs came without it: Debian packages it apart, NodeSource does not)
command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null; }
ALLURE_VERSION=2.46.1
if ! grep -qs "\"version\": \"$ALLURE_VERSION\"" .tools/node_modules/allure-commandline/package.json; then
  mkdir -p .tools && printf '*\n' > .tools/.gitignore
  npm install --prefix .tools --no-audit --no-fund --loglevel=error "allure-commandline@$ALLURE_VERSION" >/dev/null \
    || echo "setup.sh: warning: npm could not install allure-commandline (no HTML report; its tests skip)" >&2
fi
echo "setup.sh: ready (.venv/bin/pytest --hpc-config configs/minimal.yaml)"
