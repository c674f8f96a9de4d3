#!/usr/bin/env bash
# What to run on the lent GPU machine, in ONE device call (issue 8: GPU code paths proven on
# real hardware). Two steps, the first here, the second there:
#
#   1. HERE, on a developer machine with the package registries (no GPU needed):
#        bash bench/gpu_device_run.sh prep
#      downloads into the git-excluded folders .whl/ (this project's Python dependencies that
#      the GPU machine's image lacks, as cp312 wheels) and .debs/ (Debian 12's Slurm 22.05,
#      munge, OpenSSH, iproute2, ping, iperf3 and the libraries they need beyond a base system).
#
#   2. THERE, through the device tool (one call, inside its 10 minutes):
#        run(command="bash bench/gpu_device_run.sh run", carry=[".whl", ".debs"], timeout_s=600)
#      or only some steps: "bash bench/gpu_device_run.sh run gpu-real faults". It writes to $OUT
#      (at most 8 files come back):
#        summary.txt        machine, driver, GPUs, the exit code and time of every step
#        gpu-real.txt       STEP gpu-real: `pytest --hpc-config <gpu-real for this GPU> suites`:
#                           L1-L4 through the plugin on a local cluster with the real /dev/nvidia0
#        reports.tgz        that run's metrics.json, signoff.md, junit XML and the derived config
#        faults.txt         STEP faults: tests/gpu/test_real_gpu_cluster.py: healthy GPU checks,
#                           then gres.conf with a GPU too many and ConstrainDevices=no, each caught
#        cgroup-v2.txt      STEP cgroup-v2: tests/libvirt/guest_cgroup_v2_checks.py (written for the
#                           libvirt guests, runs on any cgroup-v2-only machine): the provider's v2
#                           layout, L2/L3 through the plugin, ConstrainDevices=no caught
#        gpu-recording.tgz  STEP record: raw outputs of every GPU probe (bench/gpu_device_run.py
#                           record): unpack into fixtures/gpu/<model>/ to add them as fixtures
#        evaluate.txt       STEP evaluate: the suites' judgement over that recording
#        pytest-gpu.txt     STEP pytest-gpu: tests/gpu (the fixture tests) on the GPU machine
#
# That machine has no Slurm, munge, sshd, ip, ping or iperf3 (../shared/local-cluster-notes.md,
# "The lent GPU machine"). The carried Debian packages are unpacked into a package root and laid
# UNDER /usr with a read-only overlay in a private mount namespace (the machine's own files win;
# the packages only fill what is missing), so the local provider finds every program, library
# and Slurm plugin at its usual path, and nothing outside that namespace changes. The same
# launcher runs on a bare Debian root here: bench/device_rehearsal.sh.
#
# Steps are independent: one failing does not stop the others; summary.txt lists every exit code.
# Their time limits add up to 560 s, inside one call's 600.
set -uo pipefail
cd "$(dirname "$0")/.."

WHL_DIR=${WHL_DIR:-.whl}
PY_VERSION=${PY_VERSION:-3.12}
WHEELS=(pydantic pydantic_core annotated_types typing_inspection typing_extensions ClusterShell paramiko bcrypt
        cryptography PyNaCl cffi pycparser invoke pytest-testinfra allure-pytest allure-python-commons prometheus-client)
# what the local provider runs, with what it needs beyond a base system (apt-cache depends
# --recurse, less Debian's minbase, perl and packaging helpers); the machine's own copies win
DEBS=(slurmd slurmctld slurm-client slurm-wlm-basic-plugins munge libmunge2
      openssh-server openssh-client openssh-sftp-server iproute2 iputils-ping iperf3 libiperf0 procps psmisc
      libhwloc15 libpmix2 libpmix-dev liblz4-1 libnuma1 libjson-c5 libyaml-0-2 liblua5.1-0 libbpf1 libelf1 libmnl0
      libbsd0 libmd0 libcap2 libcap2-bin libxtables12 libsctp1 libproc2-0 libwrap0 libssl3 libedit2 libcbor0.8
      libfido2-1 libgssapi-krb5-2 libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 libtirpc3 libtirpc-common
      libnsl2 libncursesw6 libreadline8 libdbus-1-3 libevent-core-2.1-7 libevent-pthreads-2.1-7 libudev1)
PACKAGE_ROOT=${HPCV_PACKAGE_ROOT:-/var/lib/hpcv-package-root}

prep() {
  for d in "/$WHL_DIR/" /.debs/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
  mkdir -p "$WHL_DIR" .debs
  local pins=()
  for name in "${WHEELS[@]}" "$@"; do
    version=$(.venv/bin/python -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    pins+=("$name${version:+==$version}")
  done
  .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$PY_VERSION" --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_26_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$WHL_DIR" "${pins[@]}"
  (cd .debs && apt-get download "${DEBS[@]}")
  du -sh "$WHL_DIR" .debs
}

step() {  # step NAME SECONDS COMMAND...: run, keep the exit code for the summary
  local name=$1 seconds=$2; shift 2
  local start=$SECONDS
  timeout "$seconds" "$@"
  local rc=$?
  echo "step $name: exit $rc after $((SECONDS - start))s" >> "$OUT/summary.txt"
  return 0
}

package_root() {  # unpack .debs/ into $PACKAGE_ROOT (merged /usr, alternatives as links); once
  [ -f "$PACKAGE_ROOT/.done" ] && return 0
  compgen -G ".debs/*.deb" > /dev/null || { echo "no .debs carried (run 'prep' on a developer machine first)"; return 1; }
  rm -rf "$PACKAGE_ROOT" && mkdir -p "$PACKAGE_ROOT/usr"
  for f in .debs/*.deb; do dpkg-deb -x "$f" "$PACKAGE_ROOT" || { echo "cannot unpack $f"; return 1; }; done
  for d in bin sbin lib lib64; do  # Debian 12's packages still ship /bin, /lib, ...: fold them into /usr
    if [ -d "$PACKAGE_ROOT/$d" ] && [ ! -L "$PACKAGE_ROOT/$d" ]; then
      mkdir -p "$PACKAGE_ROOT/usr/$d" && cp -a "$PACKAGE_ROOT/$d/." "$PACKAGE_ROOT/usr/$d/" && rm -rf "${PACKAGE_ROOT:?}/$d"
    fi
  done
  # dpkg-deb -x runs no maintainer script: make the links update-alternatives would (slurmd -> slurmd-wlm;
  # slurmd execs /usr/sbin/slurmstepd by that name)
  for f in "$PACKAGE_ROOT"/usr/sbin/*-wlm; do
    [ -e "$f" ] && ln -sfn "$(basename "$f")" "${f%-wlm}"
  done
  touch "$PACKAGE_ROOT/.done"
}

host_prereqs() {  # what the packages' maintainer scripts would have made
  mkdir -p /etc/slurm /run/sshd /var/log/slurm
  [ -e /etc/hosts ] || echo "127.0.0.1 localhost" > /etc/hosts
  getent passwd sshd > /dev/null || useradd --system --no-create-home --home-dir /run/sshd --shell /usr/sbin/nologin sshd \
    || echo "sshd:x:109:65534::/run/sshd:/usr/sbin/nologin" >> /etc/passwd
  # the nodes' sessions and jobs start from sshd's environment, not this shell's: the driver's
  # libraries must be in the linker's cache and nvidia-smi on sshd's PATH, as on a real GPU node
  if ! ldconfig -p | grep -q 'libnvidia-ml\.so\.1'; then
    local d llp=${LD_LIBRARY_PATH:-}
    for d in ${llp//:/ } /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib64; do
      if [ -e "$d/libnvidia-ml.so.1" ]; then
        echo "$d" > /etc/ld.so.conf.d/hpcv-nvidia.conf && ldconfig && echo "driver libraries: $d added to the linker cache"
        break
      fi
    done
  fi
  local smi
  smi=$(command -v nvidia-smi) \
    && ! env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin sh -c 'command -v nvidia-smi' > /dev/null \
    && ln -sfn "$smi" /usr/local/bin/nvidia-smi && echo "nvidia-smi: linked into /usr/local/bin"
  return 0
}

# "${WITH_PACKAGES[@]}" COMMAND...: COMMAND in a mount namespace whose /usr has the package root under it
# (a program, not a function, so that timeout can run it)
WITH_PACKAGES=(unshare --mount --propagation private -- /bin/sh -c
  'mount -t overlay hpcv-usr -o "lowerdir=/usr:$0/usr" /usr || exit 97; exec "$@"' "$PACKAGE_ROOT")

missing_libraries() {  # the unpacked programs' libraries that neither the machine nor the packages give
  "${WITH_PACKAGES[@]}" /bin/sh -c 'for b in slurmd slurmctld slurmstepd srun sinfo munged sshd ssh-keygen ip ping iperf3; do
      p=$(command -v "$b") || { echo "  $b: not found"; continue; }
      ldd "$p" 2>&1 | grep "not found" | sed "s|^|  $b: |"
    done
    for p in cgroup_v1 cgroup_v2 mpi_pmix gres_gpu task_cgroup proctrack_cgroup; do
      f=/usr/lib/x86_64-linux-gnu/slurm-wlm/$p.so
      [ -e "$f" ] || echo "  plugin $p: $f is missing"; ldd "$f" 2>&1 | grep "not found" | sed "s|^|  plugin $p: |"
    done'
}

pytest_cmd() {  # the plugin by its entry point where the project is installed, else by module name
  if python3 -c 'from importlib.metadata import entry_points as e; exit(not any(x.name == "hpcvalidate" for x in e(group="pytest11")))' 2>/dev/null; then
    echo "python3 -m pytest"
  else
    echo "python3 -m pytest -p pytest_hpcvalidate.plugin"
  fi
}

run_gpu_real() {
  local work=$1 pytest
  pytest=$(pytest_cmd)
  python3 bench/gpu_device_run.py config configs/gpu-real.yaml "$work/gpu-real.yaml" >> "$OUT/summary.txt" 2>&1 || return 1
  step gpu-real 230 "${WITH_PACKAGES[@]}" $pytest -p no:cacheprovider -rfEs --hpc-config "$work/gpu-real.yaml" \
    --hpc-report-dir "$work/reports" --junitxml "$work/reports/gpu-real-junit.xml" suites > "$OUT/gpu-real.txt" 2>&1
  cp "$work/gpu-real.yaml" "$work/reports/" 2>/dev/null
  tar czf "$OUT/reports.tgz" -C "$work" reports
  "${WITH_PACKAGES[@]}" python3 -m pytest_hpcvalidate cleanup >> "$OUT/summary.txt" 2>&1
}

run() {
  : "${OUT:?run this through the device tool (it sets OUT)}"
  export PYTHONUNBUFFERED=1
  local work=/var/tmp/hpcv-gpu steps=("$@")
  [ ${#steps[@]} -gt 0 ] || steps=(gpu-real faults cgroup-v2 record evaluate pytest-gpu)
  rm -rf "$work" && mkdir -p "$work"
  {
    date -u; uname -a; python3 --version; command -v python3; nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,pci.bus_id,pcie.link.gen.current,pcie.link.width.current --format=csv
    python3 -c 'import pynvml, torch; print("pynvml", pynvml.__file__, "torch", torch.__version__)'
    echo "cgroup: $(stat -fc %T /sys/fs/cgroup) $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
    echo "steps: ${steps[*]}"
  } > "$OUT/summary.txt" 2>&1
  if compgen -G "$WHL_DIR/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" "$WHL_DIR"/*.whl \
      >> "$OUT/summary.txt" 2>&1
  else
    echo "no $WHL_DIR carried: steps needing pydantic & co. will fail (run 'prep' here first)" >> "$OUT/summary.txt"
  fi
  export PYTHONPATH="$PWD/src:$work/site${PYTHONPATH:+:$PYTHONPATH}"
  if package_root >> "$OUT/summary.txt" 2>&1; then
    host_prereqs >> "$OUT/summary.txt" 2>&1
    { echo "libraries and plugins the unpacked programs still miss (none listed: none):"; missing_libraries; } >> "$OUT/summary.txt" 2>&1
  fi
  local s pytest
  pytest=$(pytest_cmd)
  for s in "${steps[@]}"; do
    case "$s" in
      gpu-real) run_gpu_real "$work" ;;
      faults) step faults 170 "${WITH_PACKAGES[@]}" $pytest -p no:cacheprovider -rfEs -v tests/gpu/test_real_gpu_cluster.py \
                > "$OUT/faults.txt" 2>&1
              "${WITH_PACKAGES[@]}" python3 -m pytest_hpcvalidate cleanup >> "$OUT/summary.txt" 2>&1 ;;
      cgroup-v2) step cgroup-v2 60 "${WITH_PACKAGES[@]}" $pytest -p no:cacheprovider -rfEs -v \
                   tests/libvirt/guest_cgroup_v2_checks.py > "$OUT/cgroup-v2.txt" 2>&1 ;;
      record) step record 50 python3 bench/gpu_device_run.py record "$work/rec" >> "$OUT/summary.txt" 2>&1
              tar czf "$OUT/gpu-recording.tgz" -C "$work" rec ;;
      evaluate) step evaluate 15 python3 bench/gpu_device_run.py evaluate "$work/rec" > "$OUT/evaluate.txt" 2>&1 ;;
      pytest-gpu) step pytest-gpu 35 $pytest -p no:cacheprovider -m "not integration" -q -rs tests/gpu \
                    > "$OUT/pytest-gpu.txt" 2>&1 ;;
      rehearse) # bench/device_rehearsal.sh: the same launcher on a machine without a GPU
        step rehearse 400 "${WITH_PACKAGES[@]}" $pytest -p no:cacheprovider -rfEs --hpc-config "${REHEARSAL_CONFIG:-configs/gpu-sim.yaml}" \
          --hpc-report-dir "$work/reports" suites/l1_network suites/l2_slurm suites/l3_gres suites/l3_cgroup \
          > "$OUT/rehearse.txt" 2>&1
        "${WITH_PACKAGES[@]}" python3 -m pytest_hpcvalidate cleanup >> "$OUT/summary.txt" 2>&1 ;;
      *) echo "unknown step $s (gpu-real faults cgroup-v2 record evaluate pytest-gpu rehearse)" >> "$OUT/summary.txt" ;;
    esac
  done
  cat "$OUT/summary.txt"
  for f in gpu-real.txt faults.txt cgroup-v2.txt rehearse.txt evaluate.txt; do
    if [ -f "$OUT/$f" ]; then echo "== $f"; tail -25 "$OUT/$f"; fi
  done
  return 0  # the steps' exit codes are in summary.txt; a step not run is not a failed run
}

case "${1:-}" in
  prep) shift; prep "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 2 ;;
esac
