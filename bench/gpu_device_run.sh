#!/usr/bin/env bash
# What to run on the lent GPU machine, in ONE device call (issue 8: GPU code paths proven on
# real hardware). Two steps, the first here, the second there:
#
#   1. HERE, on a developer machine with the package registries (no GPU needed):
#        bash bench/gpu_device_run.sh prep
#      downloads into the git-excluded folders .whl/ (this project's Python dependencies that
#      the GPU machine's image lacks, as cp312 wheels, ~13 MB) and .debs/ (Debian 12's Slurm
#      22.05, munge and iproute2 packages, for the real-Slurm step; see
#      ../shared/local-cluster-notes.md, "The lent GPU machine").
#
#   2. THERE, through the device tool (one call, well inside its 10 minutes):
#        run(command="bash bench/gpu_device_run.sh run", carry=[".whl", ".debs"], timeout_s=600)
#      and it writes to $OUT (at most 8 files come back):
#        summary.txt           machine, driver, GPUs, what each step returned
#        gpu-recording.tgz     fresh raw outputs of every GPU probe (bench/gpu_device_run.py record):
#                              unpack into fixtures/gpu/<model>/ to add them as fixtures
#        evaluate.txt          the suites' judgement over that recording: NVML vs nvidia-smi
#                              agreement, every L1 check, every L4 metric against its threshold
#        pytest-gpu.txt        tests/gpu (not the local-cluster ones) on the GPU machine
#        gpu-real.txt, gpu-real-junit.xml
#                              the shipped GPU suites (L1 health, L3 real GRES, L4 torch) through the
#                              plugin against a local cluster with the real /dev/nvidia*, when
#                              configs/gpu-real.yaml exists (the local provider's real-GPU node
#                              option, issue 8) and .debs/ was carried; else says why it was skipped
#
# Steps are independent: one failing does not stop the others; summary.txt lists every exit code.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(pydantic pydantic_core annotated_types typing_inspection typing_extensions ClusterShell paramiko bcrypt
        cryptography PyNaCl cffi pycparser invoke pytest-testinfra allure-pytest allure-python-commons)
DEBS=(slurmd slurmctld slurm-client slurm-wlm-basic-plugins libslurm38 munge libmunge2
      iproute2 libbpf1 libelf1 libmnl0 libbsd0 libmd0 libcap2 libhwloc15 libpmix2 liblz4-1 libnuma1)

prep() {
  for d in /.whl/ /.debs/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
  mkdir -p .whl .debs
  local pins=()
  for name in "${WHEELS[@]}"; do
    version=$(.venv/bin/python -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    pins+=("$name${version:+==$version}")
  done
  .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_26_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl "${pins[@]}"
  (cd .debs && apt-get download "${DEBS[@]}")
  du -sh .whl .debs
}

step() {  # step NAME SECONDS COMMAND...: run, keep the exit code for the summary
  local name=$1 seconds=$2; shift 2
  local start=$SECONDS
  timeout "$seconds" "$@"
  local rc=$?
  echo "step $name: exit $rc after $((SECONDS - start))s" >> "$OUT/summary.txt"
  return 0
}

run() {
  : "${OUT:?run this through the device tool (it sets OUT)}"
  export PYTHONUNBUFFERED=1
  local work=/tmp/hpcv-gpu
  rm -rf "$work" && mkdir -p "$work"
  {
    date -u; uname -a; python3 --version; nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,pci.bus_id,pcie.link.gen.current,pcie.link.width.current --format=csv
    python3 -c 'import pynvml, torch; print("pynvml", pynvml.__file__, "torch", torch.__version__)'
  } > "$OUT/summary.txt" 2>&1
  if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" .whl/*.whl \
      >> "$OUT/summary.txt" 2>&1
  else
    echo "no .whl carried: steps needing pydantic & co. will fail (run 'prep' here first)" >> "$OUT/summary.txt"
  fi
  export PYTHONPATH="$PWD/src:$work/site${PYTHONPATH:+:$PYTHONPATH}"
  # the plugin by its entry point where the project is installed, else by module name
  local plugin=(-p pytest_hpcvalidate.plugin)
  python3 -c 'from importlib.metadata import entry_points as e; exit(not any(x.name == "hpcvalidate" for x in e(group="pytest11")))' \
    2>/dev/null && plugin=()

  step record 240 python3 bench/gpu_device_run.py record "$work/rec" >> "$OUT/summary.txt" 2>&1
  tar czf "$OUT/gpu-recording.tgz" -C "$work" rec
  step evaluate 60 python3 bench/gpu_device_run.py evaluate "$work/rec" > "$OUT/evaluate.txt" 2>&1
  step pytest-gpu 180 python3 -m pytest "${plugin[@]}" -p no:cacheprovider -m "not integration" \
    -q -rs tests/gpu > "$OUT/pytest-gpu.txt" 2>&1

  if [ ! -f configs/gpu-real.yaml ]; then
    echo "gpu-real: skipped: configs/gpu-real.yaml does not exist yet" | tee "$OUT/gpu-real.txt" >> "$OUT/summary.txt"
  elif ! compgen -G ".debs/*.deb" > /dev/null; then
    echo "gpu-real: skipped: no .debs carried (run 'prep' here first)" | tee "$OUT/gpu-real.txt" >> "$OUT/summary.txt"
  else
    # Slurm, munge and iproute2 unpacked beside the system (never over /), as the notes did
    export HPCV_DEB_ROOT="$work/debroot"
    for f in .debs/*.deb; do dpkg -x "$f" "$HPCV_DEB_ROOT"; done
    export PATH="$HPCV_DEB_ROOT/usr/sbin:$HPCV_DEB_ROOT/usr/bin:$HPCV_DEB_ROOT/sbin:$PATH"
    export LD_LIBRARY_PATH="$HPCV_DEB_ROOT/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    {
      echo "libraries the unpacked daemons still miss:"
      for b in slurmd slurmctld slurmd-wlm slurmctld-wlm munged; do
        p=$(command -v "$b") && ldd "$p" | grep "not found" | sed "s|^|  $b: |"
      done
    } >> "$OUT/summary.txt" 2>&1
    step gpu-real 420 python3 -m pytest "${plugin[@]}" -p no:cacheprovider -rs \
      --hpc-config configs/gpu-real.yaml --hpc-report-dir "$work/reports" --junitxml "$OUT/gpu-real-junit.xml" \
      suites/l1_pcie/test_gpu_health.py suites/l3_gres/test_real_gpu.py suites/l4_gpu/test_torch_cuda.py \
      > "$OUT/gpu-real.txt" 2>&1
    python3 -m pytest_hpcvalidate cleanup >> "$OUT/summary.txt" 2>&1
  fi
  cat "$OUT/summary.txt"
  tail -40 "$OUT/evaluate.txt"
}

case "${1:-}" in
  prep) prep ;;
  run) run ;;
  *) sed -n '2,35p' "$0"; exit 2 ;;
esac
