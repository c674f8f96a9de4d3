"""GPU facts per node: what NVML (or ``nvidia-smi -q -x``) and the PCI bus in sysfs say.

Two sources give the same typed :class:`NodeGpuFacts`:

- **NVML**, primary: :data:`NVML_SNIPPET` runs *on the node* through the transport
  (``python3 - <<EOF``) with the node's own pynvml and driver, and prints one JSON object. Its
  format is the one recorded on a real H100 (``fixtures/gpu/h100/nvml.json``): a value NVML
  cannot give is the string ``"ERR <exception>: <message>"``, never a crash, so one
  unsupported call (retired pages on Hopper, an older binding's missing function) costs that
  field only.
- **nvidia-smi -q -x**, fallback where pynvml is not importable or NVML does not initialise:
  the same facts parsed from the XML report (``fixtures/gpu/h100/nvidia-smi-q.xml``).

A field the GPU or driver does not support reads :data:`NOT_SUPPORTED`; a field that failed
otherwise reads ``Unavailable("error: ...")``. Neither is an exception: the checks decide
whether a missing value matters.

The same command runs inside Slurm jobs (``in_job=True``): it then also reports
``CUDA_VISIBLE_DEVICES`` and how many devices the CUDA driver (libcuda) enumerates, which is
what the GRES checks compare with NVML's view.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

from ..transport import CommandResult


@dataclass(frozen=True)
class Unavailable:
    """A fact the node could not give; ``reason`` is "not supported" or "error: ..."."""

    reason: str

    def __str__(self) -> str:
        return self.reason


NOT_SUPPORTED = Unavailable("not supported")

T = TypeVar("T")
Reading = T | Unavailable


def known(value: object) -> bool:
    return not isinstance(value, Unavailable)


#: clock event ("throttle") reasons, NVML bit → the name nvidia-smi's XML uses
#: (``clocks_event_reason_<name>``, ``clocks_throttle_reason_<name>`` before driver 530)
THROTTLE_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clocks_setting",
}
COMPUTE_MODES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}


@dataclass(frozen=True)
class PcieLink:
    gen: Reading[int] = NOT_SUPPORTED
    width: Reading[int] = NOT_SUPPORTED
    max_gen: Reading[int] = NOT_SUPPORTED
    max_width: Reading[int] = NOT_SUPPORTED


@dataclass(frozen=True)
class GpuFacts:
    """One GPU as NVML (or nvidia-smi) sees it."""

    index: int
    name: str
    uuid: str
    bus_id: str                                   # as NVML prints it: 00000000:00:06.0
    pci_device_id: Reading[str] = NOT_SUPPORTED   # "2330"
    minor: Reading[int] = NOT_SUPPORTED           # /dev/nvidia<minor>
    memory_total_mib: Reading[int] = NOT_SUPPORTED
    ecc_enabled: Reading[bool] = NOT_SUPPORTED
    ecc_pending: Reading[bool] = NOT_SUPPORTED    # the mode after the next reset
    ecc_uncorrected_volatile: Reading[int] = NOT_SUPPORTED
    retired_pages_pending: Reading[bool] = NOT_SUPPORTED
    remapped_rows_pending: Reading[bool] = NOT_SUPPORTED
    remapped_rows_failed: Reading[bool] = NOT_SUPPORTED
    pcie: PcieLink = field(default_factory=PcieLink)
    persistence: Reading[bool] = NOT_SUPPORTED
    compute_mode: Reading[str] = NOT_SUPPORTED
    mig_enabled: Reading[bool] = NOT_SUPPORTED
    throttle_reasons: Reading[frozenset[str]] = NOT_SUPPORTED
    pstate: Reading[int] = NOT_SUPPORTED          # 0 = P0 (full performance) ... 15
    temperature_c: Reading[int] = NOT_SUPPORTED
    power_w: Reading[float] = NOT_SUPPORTED
    power_limit_w: Reading[float] = NOT_SUPPORTED

    @property
    def address(self) -> str:
        """The bus id as sysfs spells it (``0000:00:06.0``)."""
        return pci_address(self.bus_id)


Source = Literal["nvml", "nvidia-smi", "none"]


@dataclass(frozen=True)
class NodeGpuFacts:
    """Every GPU of one node (or of one job step), and where the facts came from."""

    node: str
    source: Source
    driver_version: Reading[str] = NOT_SUPPORTED
    cuda_driver_version: Reading[str] = NOT_SUPPORTED
    gpus: tuple[GpuFacts, ...] = ()
    #: why NVML did not answer (and nvidia-smi neither, when source is "none")
    error: str = ""
    # in a job step only (``in_job=True``)
    cuda_visible_devices: tuple[str, ...] | None = None   # None: unset
    cuda_device_count: Reading[int] = NOT_SUPPORTED
    start: float = 0.0
    end: float = 0.0

    @property
    def available(self) -> bool:
        return self.source != "none"

    def by_address(self) -> dict[str, GpuFacts]:
        return {g.address: g for g in self.gpus}


def pci_address(bus_id: str) -> str:
    """``00000000:00:06.0`` (NVML) or ``0000:00:06.0`` (sysfs) → ``0000:00:06.0``."""
    domain, sep, rest = bus_id.strip().partition(":")
    if not sep:
        return bus_id.strip().lower()
    try:
        return f"{int(domain, 16):04x}:{rest.lower()}"
    except ValueError:
        return bus_id.strip().lower()


def cuda_version_text(value: int) -> str:
    """NVML's CUDA driver version integer (13000) → "13.0"."""
    return f"{value // 1000}.{(value % 1000) // 10}"


# ----------------------------------------------------------------------------- NVML source
#: Runs on the node (``python3 -``): prints one JSON object, exit 0 when NVML answered, 3 when
#: it did not (pynvml missing, driver not loaded). Python 3.6+, no dependency but pynvml.
NVML_SNIPPET = r'''
import json, os, sys, time

out = {"start": time.time(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def err(exc):
    return "ERR %s: %s" % (type(exc).__name__, exc)


def text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def cuda_device_count():
    import ctypes
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return err(exc)
    rc = lib.cuInit(0)
    if rc == 100:  # CUDA_ERROR_NO_DEVICE
        return 0
    if rc != 0:
        return "ERR CUresult: cuInit returned %d" % rc
    n = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(n))
    return n.value if rc == 0 else "ERR CUresult: cuDeviceGetCount returned %d" % rc


def finish(code):
    hold = float(os.environ.get("HPCV_HOLD") or 0)
    if hold:
        time.sleep(hold)
    out["end"] = time.time()
    print(json.dumps(out))
    sys.exit(code)


if os.environ.get("HPCV_CUDA"):
    out["cuda_device_count"] = cuda_device_count()
try:
    import pynvml
    pynvml.nvmlInit()
except Exception as exc:
    out["error"] = err(exc)
    finish(3)


def call(name, *args):
    fn = getattr(pynvml, name, None)
    if fn is None:
        return "ERR AttributeError: pynvml has no %s" % name
    try:
        return text(fn(*args))
    except Exception as exc:
        return err(exc)


def scaled(value, divisor):
    return value / divisor if isinstance(value, (int, float)) else value


def gpu(i, h):
    pci = call("nvmlDeviceGetPciInfo", h)
    mem = call("nvmlDeviceGetMemoryInfo", h)
    reasons = call("nvmlDeviceGetCurrentClocksEventReasons", h)
    if isinstance(reasons, str):
        reasons = call("nvmlDeviceGetCurrentClocksThrottleReasons", h)
    return {
        "index": i,
        "name": call("nvmlDeviceGetName", h),
        "uuid": call("nvmlDeviceGetUUID", h),
        "pci_bus_id": pci if isinstance(pci, str) else text(pci.busId),
        "pci_device_id": pci if isinstance(pci, str) else "0x%08x" % pci.pciDeviceId,
        "minor": call("nvmlDeviceGetMinorNumber", h),
        "mem_total": mem if isinstance(mem, str) else mem.total,
        "ecc_mode": call("nvmlDeviceGetEccMode", h),
        "ecc_uncorrected_volatile": call("nvmlDeviceGetTotalEccErrors", h, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                                         pynvml.NVML_VOLATILE_ECC),
        "retired_pages_pending": call("nvmlDeviceGetRetiredPagesPendingStatus", h),
        "remapped_rows": call("nvmlDeviceGetRemappedRows", h),
        "pcie_gen_cur": call("nvmlDeviceGetCurrPcieLinkGeneration", h),
        "pcie_width_cur": call("nvmlDeviceGetCurrPcieLinkWidth", h),
        "pcie_gen_max": call("nvmlDeviceGetMaxPcieLinkGeneration", h),
        "pcie_width_max": call("nvmlDeviceGetMaxPcieLinkWidth", h),
        "temp": call("nvmlDeviceGetTemperature", h, pynvml.NVML_TEMPERATURE_GPU),
        "power_w": scaled(call("nvmlDeviceGetPowerUsage", h), 1000.0),
        "power_limit_w": scaled(call("nvmlDeviceGetEnforcedPowerLimit", h), 1000.0),
        "persistence": call("nvmlDeviceGetPersistenceMode", h),
        "compute_mode": call("nvmlDeviceGetComputeMode", h),
        "mig_mode": call("nvmlDeviceGetMigMode", h),
        "clocks_throttle_reasons": reasons,
        "pstate": call("nvmlDeviceGetPerformanceState", h),
    }


out["driver"] = call("nvmlSystemGetDriverVersion")
out["cuda_driver"] = call("nvmlSystemGetCudaDriverVersion")
count = call("nvmlDeviceGetCount")
out["count"] = count
out["gpus"] = []
for i in range(count if isinstance(count, int) else 0):
    handle = call("nvmlDeviceGetHandleByIndex", i)
    out["gpus"].append({"index": i, "name": handle} if isinstance(handle, str) else gpu(i, handle))
call("nvmlShutdown")
finish(0)
'''

#: pynvml exception names (and our own markers) that mean "this GPU/driver has no such thing"
_UNSUPPORTED = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound", "AttributeError", "NVMLError_NoData")


def _reading(value: object, kind: type | None = None) -> Reading:
    """A JSON value from the snippet → the value, or Unavailable for an ``"ERR ..."`` string."""
    if isinstance(value, str):
        if value.startswith("ERR "):
            what = value[4:]
            return NOT_SUPPORTED if what.split(":", 1)[0] in _UNSUPPORTED else Unavailable(f"error: {what}")
        if value.lower() in ("n/a", "not supported"):
            return NOT_SUPPORTED
    if value is None:
        return NOT_SUPPORTED
    if kind is bool and isinstance(value, (int, bool)):
        return bool(value)
    if kind is int and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    if kind is None:
        return value
    return Unavailable(f"error: unexpected value {value!r}")


def _pair(value: object, index: int, kind: type) -> Reading:
    """Element ``index`` of a list value (``ecc_mode: [current, pending]``), or why not."""
    if isinstance(value, list) and len(value) > index:
        return _reading(value[index], kind)
    return _reading(value if not isinstance(value, list) else None, kind)


def _device_id(value: object) -> Reading[str]:
    """``0x233010de`` (device << 16 | vendor) → ``2330``."""
    v = _reading(value, str)
    if not known(v):
        return v
    try:
        return f"{int(str(v), 16) >> 16:04x}"
    except ValueError:
        return Unavailable(f"error: unexpected PCI device id {v!r}")


def _throttle(value: object) -> Reading[frozenset[str]]:
    v = _reading(value, int)
    if not known(v):
        return v
    return frozenset(name for bit, name in THROTTLE_BITS.items() if int(v) & bit)


def _gpu_from_nvml(g: dict) -> GpuFacts:
    mem = _reading(g.get("mem_total"), int)
    compute = _reading(g.get("compute_mode"), int)
    rows = g.get("remapped_rows")
    return GpuFacts(
        index=int(g.get("index", 0)),
        name=str(g.get("name", "")),
        uuid=str(g.get("uuid", "")),
        bus_id=str(g.get("pci_bus_id", "")),
        pci_device_id=_device_id(g.get("pci_device_id")),
        minor=_reading(g.get("minor"), int),
        memory_total_mib=int(mem) // 2**20 if known(mem) else mem,
        ecc_enabled=_pair(g.get("ecc_mode"), 0, bool),
        ecc_pending=_pair(g.get("ecc_mode"), 1, bool),
        ecc_uncorrected_volatile=_reading(g.get("ecc_uncorrected_volatile"), int),
        retired_pages_pending=_reading(g.get("retired_pages_pending"), bool),
        # nvmlDeviceGetRemappedRows: (corrected rows, uncorrected rows, pending, failure occurred)
        remapped_rows_pending=_pair(rows, 2, bool),
        remapped_rows_failed=_pair(rows, 3, bool),
        pcie=PcieLink(*(_reading(g.get(k), int) for k in ("pcie_gen_cur", "pcie_width_cur", "pcie_gen_max",
                                                           "pcie_width_max"))),
        persistence=_reading(g.get("persistence"), bool),
        compute_mode=COMPUTE_MODES.get(int(compute), str(compute)) if known(compute) else compute,
        mig_enabled=_pair(g.get("mig_mode"), 0, bool),
        throttle_reasons=_throttle(g.get("clocks_throttle_reasons")),
        pstate=_reading(g.get("pstate"), int),
        temperature_c=_reading(g.get("temp"), int),
        power_w=_reading(g.get("power_w"), float),
        power_limit_w=_reading(g.get("power_limit_w"), float),
    )


def _job_fields(doc: dict) -> dict:
    cvd = doc.get("cuda_visible_devices")
    return {
        "cuda_visible_devices": None if cvd is None else tuple(v for v in str(cvd).split(",") if v),
        "cuda_device_count": _reading(doc.get("cuda_device_count"), int),
        "start": float(doc.get("start") or 0.0),
        "end": float(doc.get("end") or 0.0),
    }


def parse_nvml_json(node: str, text: str | dict) -> NodeGpuFacts:
    """The snippet's JSON (or the recorded ``nvml.json``; text or the decoded object) →
    facts; source "none" when NVML did not answer (the JSON's ``error`` says why)."""
    doc = json.loads(text) if isinstance(text, str) else text
    if doc.get("error") or "gpus" not in doc:
        return NodeGpuFacts(node, "none", error=f"NVML: {doc.get('error') or 'no GPU list'}", **_job_fields(doc))
    cuda = _reading(doc.get("cuda_driver"), int)
    return NodeGpuFacts(
        node=node,
        source="nvml",
        driver_version=_reading(doc.get("driver"), str),
        cuda_driver_version=cuda_version_text(int(cuda)) if known(cuda) else cuda,
        gpus=tuple(_gpu_from_nvml(g) for g in doc["gpus"]),
        **_job_fields(doc),
    )


def _json_object(text: str) -> tuple[dict | None, str]:
    """The first JSON object starting at the beginning of a line (one line or pretty-printed)
    and the text around it; (None, text) when there is none or it does not decode."""
    m = re.search(r"^\{", text, re.MULTILINE)
    if not m:
        return None, text
    try:
        doc, end = json.JSONDecoder().raw_decode(text, m.start())
    except ValueError:
        return None, text
    return (doc, text[:m.start()] + text[end:]) if isinstance(doc, dict) else (None, text)


# ----------------------------------------------------------------------------- nvidia-smi -q -x
_SMI_UNSUPPORTED = {"n/a", "[n/a]", "not supported", "[not supported]", "none", ""}
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?")


def _smi_text(el: ET.Element | None, path: str) -> Reading[str]:
    node = el.find(path) if el is not None else None
    if node is None:
        return NOT_SUPPORTED
    value = " ".join((node.text or "").split())
    if value.lower() in _SMI_UNSUPPORTED:
        return NOT_SUPPORTED
    if value.startswith("[") and value.endswith("]"):  # [Unknown Error], [GPU requires reset] ...
        return Unavailable(f"error: {value[1:-1]}")
    return value


def _smi_number(el: ET.Element | None, path: str, kind: type = int) -> Reading:
    """``35 C`` / ``700.00 W`` / ``16x`` / ``81559 MiB`` → the number."""
    v = _smi_text(el, path)
    if not known(v):
        return v
    m = _NUMBER.match(str(v))
    if not m:
        return Unavailable(f"error: unexpected value {v!r} in <{path}>")
    return kind(float(m.group(0))) if kind is int else kind(m.group(0))


def _smi_flag(el: ET.Element | None, path: str, yes: str = "enabled") -> Reading[bool]:
    v = _smi_text(el, path)
    return v.lower() in (yes, "yes", "active") if known(v) else v


def _first_known(*values: Reading) -> Reading:
    return next((v for v in values if known(v)), values[0])


def _smi_uncorrected(gpu: ET.Element) -> Reading[int]:
    """Uncorrected volatile ECC errors: the sum of every ``*uncorrectable*`` counter (drivers
    ≥ 450: sram/dram), or ``double_bit/total`` (older drivers)."""
    volatile = gpu.find("ecc_errors/volatile")
    if volatile is None:
        return NOT_SUPPORTED
    values = [_smi_number(volatile, child.tag) for child in volatile if "uncorrectable" in child.tag]
    if not values:
        values = [_smi_number(volatile, "double_bit/total")]
    numbers = [int(v) for v in values if known(v)]
    return sum(numbers) if numbers else values[0]


def _smi_throttle(gpu: ET.Element) -> Reading[frozenset[str]]:
    block = gpu.find("clocks_event_reasons")
    if block is None:
        block = gpu.find("clocks_throttle_reasons")
    if block is None:
        return NOT_SUPPORTED
    names = set()
    for child in block:
        name = re.sub(r"^clocks_(?:event|throttle)_reason_", "", child.tag)
        if " ".join((child.text or "").split()).lower() == "active":
            names.add(name)
    return frozenset(names)


def _smi_gpu(index: int, gpu: ET.Element) -> GpuFacts:
    link = gpu.find("pci/pci_gpu_link_info")
    pstate = _smi_text(gpu, "performance_state")
    device = _smi_text(gpu, "pci/pci_device_id")
    bus = _smi_text(gpu, "pci/pci_bus_id")
    return GpuFacts(
        index=index,
        name=str(_smi_text(gpu, "product_name")),
        uuid=str(_smi_text(gpu, "uuid")),
        bus_id=str(bus) if known(bus) else gpu.get("id", ""),
        pci_device_id=_device_id("0x" + device) if known(device) else device,
        minor=_smi_number(gpu, "minor_number"),
        memory_total_mib=_smi_number(gpu, "fb_memory_usage/total"),
        ecc_enabled=_smi_flag(gpu, "ecc_mode/current_ecc"),
        ecc_pending=_smi_flag(gpu, "ecc_mode/pending_ecc"),
        ecc_uncorrected_volatile=_smi_uncorrected(gpu),
        retired_pages_pending=_first_known(_smi_flag(gpu, "retired_pages/pending_retirement"),
                                           _smi_flag(gpu, "retired_pages/pending_blacklist")),
        remapped_rows_pending=_smi_flag(gpu, "remapped_rows/remapped_row_pending"),
        remapped_rows_failed=_smi_flag(gpu, "remapped_rows/remapped_row_failure"),
        pcie=PcieLink(
            _smi_number(link, "pcie_gen/current_link_gen"),
            _smi_number(link, "link_widths/current_link_width"),
            _smi_number(link, "pcie_gen/max_link_gen"),
            _smi_number(link, "link_widths/max_link_width"),
        ),
        persistence=_smi_flag(gpu, "persistence_mode"),
        compute_mode=_smi_text(gpu, "compute_mode"),
        mig_enabled=_smi_flag(gpu, "mig_mode/current_mig"),
        throttle_reasons=_smi_throttle(gpu),
        pstate=int(str(pstate)[1:]) if known(pstate) and re.fullmatch(r"P\d+", str(pstate)) else NOT_SUPPORTED,
        temperature_c=_smi_number(gpu, "temperature/gpu_temp"),
        power_w=_first_known(_smi_number(gpu, "gpu_power_readings/instant_power_draw", float),
                             _smi_number(gpu, "gpu_power_readings/power_draw", float),
                             _smi_number(gpu, "power_readings/power_draw", float)),
        power_limit_w=_first_known(_smi_number(gpu, "gpu_power_readings/current_power_limit", float),
                                   _smi_number(gpu, "power_readings/enforced_power_limit", float)),
    )


def parse_nvidia_smi_xml(node: str, text: str) -> NodeGpuFacts:
    """``nvidia-smi -q -x`` → facts (source "nvidia-smi")."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return NodeGpuFacts(node, "none", error=f"nvidia-smi -q -x printed no readable XML: {exc}")
    return NodeGpuFacts(
        node=node,
        source="nvidia-smi",
        driver_version=_smi_text(root, "driver_version"),
        cuda_driver_version=_smi_text(root, "cuda_version"),
        gpus=tuple(_smi_gpu(i, g) for i, g in enumerate(root.findall("gpu"))),
    )


# ----------------------------------------------------------------------------- on the node
def facts_command(in_job: bool = False, hold_s: float = 0.0, python: str = "python3") -> str:
    """The shell command printing the snippet's JSON, then ``nvidia-smi -q -x`` when NVML did
    not answer. ``in_job``: also count CUDA devices (inside a Slurm step); ``hold_s``: stay
    that long before printing (to overlap concurrent steps); ``python``: the node's Python with
    pynvml (the config's ``gpus.python``)."""
    env = ("HPCV_CUDA=1 " if in_job else "") + (f"HPCV_HOLD={hold_s:g} " if hold_s else "")
    return (
        f"{env}{shlex.quote(python)} - <<'HPCV_NVML'\n{NVML_SNIPPET}\nHPCV_NVML\n"
        "if [ $? -ne 0 ] && command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -q -x; fi; true"
    )


def parse_facts(node: str, stdout: str, stderr: str = "") -> NodeGpuFacts:
    """Output of :func:`facts_command` → facts from NVML, else from nvidia-smi's XML, else
    source "none" with both reasons."""
    doc, rest = _json_object(stdout)
    nvml = parse_nvml_json(node, doc) if doc is not None else None
    if nvml is not None and nvml.available:
        return nvml
    reasons = [nvml.error if nvml else f"python3/NVML printed nothing readable ({stderr.strip()[-300:] or 'no error'})"]
    start = rest.find("<?xml")
    if start < 0:
        start = rest.find("<nvidia_smi_log")
    job = {k: getattr(nvml, k) for k in ("cuda_visible_devices", "cuda_device_count", "start", "end")} if nvml else {}
    if start >= 0:
        smi = parse_nvidia_smi_xml(node, rest[start:])
        if smi.available:
            return replace(smi, **job, error=reasons[0])
        reasons.append(smi.error)
    else:
        reasons.append(f"nvidia-smi: {rest.strip()[-200:] or 'not found'}")
    return NodeGpuFacts(node, "none", error="; ".join(reasons), **job)


def from_result(result: CommandResult) -> NodeGpuFacts:
    return parse_facts(result.node, result.stdout, result.stderr)


def node_facts(node, timeout: float = 60.0, python: str = "python3") -> NodeGpuFacts:
    """The GPUs of ``node`` (NVML on the node, nvidia-smi as the fallback)."""
    return from_result(node.run(facts_command(python=python), timeout=timeout))


def gather_facts(cluster, nodes, timeout: float = 60.0, pythons: dict[str, str] | None = None) -> dict[str, NodeGpuFacts]:
    """:func:`node_facts` for many nodes at once (wall time follows the slowest node);
    ``pythons``: {node: its Python with pynvml}, default python3."""
    def command(n) -> str:
        return facts_command(python=(pythons or {}).get(n.name, "python3"))

    return {name: from_result(r) for name, r in cluster.run_all(command, nodes=nodes, timeout=timeout).items()}


# ----------------------------------------------------------------------------- PCI bus (sysfs)
@dataclass(frozen=True)
class PciFunction:
    """One PCI function as the node's sysfs shows it (``/sys/bus/pci/devices/<address>``)."""

    address: str           # 0000:00:06.0
    vendor: str            # "10de"
    device: str            # "2330"
    pci_class: int         # 0x030200
    driver: str            # "" when none is bound
    link: PcieLink = field(default_factory=PcieLink)

    @property
    def is_display(self) -> bool:
        """A display controller (VGA 0x0300, 3D 0x0302): a GPU, not its audio function."""
        return self.pci_class >> 16 == 0x03

    def describe(self) -> str:
        return f"{self.address} [{self.vendor}:{self.device}] driver {self.driver or 'none'}"


#: GT/s per lane (sysfs ``current_link_speed``) → PCIe generation
_GEN_BY_SPEED = {"2.5": 1, "5.0": 2, "5": 2, "8.0": 3, "8": 3, "16.0": 4, "16": 4, "32.0": 5, "32": 5, "64.0": 6, "64": 6}
_PCI_ATTRS = ("vendor", "device", "class", "subsystem_vendor", "subsystem_device", "numa_node",
              "current_link_speed", "current_link_width", "max_link_speed", "max_link_width")

#: prints, for each NVIDIA function on the PCI bus, the block format of the recording
#: ``fixtures/gpu/h100/sysfs-pci.txt`` (``== <path>`` then ``attribute=value`` lines)
PCI_COMMAND = (
    "for d in /sys/bus/pci/devices/*; do "
    "[ \"$(cat \"$d/vendor\" 2>/dev/null)\" = 0x10de ] || continue; echo \"== $d\"; "
    f"for a in {' '.join(_PCI_ATTRS)}; do [ -r \"$d/$a\" ] && echo \"$a=$(cat \"$d/$a\" 2>/dev/null)\"; done; "
    "echo \"driver=$(basename \"$(readlink \"$d/driver\" 2>/dev/null)\" 2>/dev/null)\"; "
    "echo \"iommu_group=$(basename \"$(readlink \"$d/iommu_group\" 2>/dev/null)\" 2>/dev/null)\"; "
    "done; true"
)


def link_gen(speed: str) -> Reading[int]:
    """``32.0 GT/s PCIe`` → 5."""
    number = speed.split(" ", 1)[0].strip()
    return _GEN_BY_SPEED.get(number, NOT_SUPPORTED)


def _int_or_ns(text: str | None) -> Reading[int]:
    return int(text) if text and text.strip().isdigit() else NOT_SUPPORTED


def parse_sysfs_pci(text: str) -> list[PciFunction]:
    """Blocks of ``== /sys/bus/pci/devices/<addr>`` + ``key=value`` lines → functions. A line
    that is neither ends the block (the recording has other output after the last one)."""
    blocks: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("== "):
            current = {}
            blocks.append((line[3:].strip().rstrip("/").rsplit("/", 1)[-1], current))
        elif current is not None and re.match(r"^[a-z_]+=", line):
            key, _, value = line.partition("=")
            current[key] = value.strip()
        else:
            current = None
    out = []
    for address, kv in blocks:
        out.append(PciFunction(
            address=address.lower(),
            vendor=kv.get("vendor", "").lower().removeprefix("0x"),
            device=kv.get("device", "").lower().removeprefix("0x"),
            pci_class=int(kv.get("class", "0x0"), 16),
            driver=kv.get("driver", ""),
            link=PcieLink(link_gen(kv.get("current_link_speed", "")), _int_or_ns(kv.get("current_link_width")),
                          link_gen(kv.get("max_link_speed", "")), _int_or_ns(kv.get("max_link_width"))),
        ))
    return out


def nvidia_functions(node, timeout: float = 30.0) -> list[PciFunction]:
    """The NVIDIA PCI functions on ``node``'s bus."""
    return [f for f in parse_sysfs_pci(node.run(PCI_COMMAND, timeout=timeout).stdout) if f.vendor == "10de"]


def gather_pci(cluster, nodes, timeout: float = 30.0) -> dict[str, list[PciFunction]]:
    """:func:`nvidia_functions` for many nodes at once."""
    results = cluster.run_all(PCI_COMMAND, nodes=nodes, timeout=timeout)
    return {name: [f for f in parse_sysfs_pci(r.stdout) if f.vendor == "10de"] for name, r in results.items()}


# ----------------------------------------------------------------------------- device files
#: prints ``<path> <major> <minor>`` for each path that is a character device, ``<path> -`` else
def device_numbers_command(paths: list[str]) -> str:
    quoted = " ".join(shlex.quote(p) for p in paths)
    return (f"for f in {quoted}; do if [ -c \"$f\" ]; then "
            "echo \"$f $(stat -c '%t %T' \"$f\")\"; else echo \"$f -\"; fi; done")


def parse_device_numbers(text: str) -> dict[str, tuple[int, int] | None]:
    """``/dev/nvidia0 c3 0`` (hex major/minor from ``stat -c '%t %T'``) → {path: (195, 0)};
    None for a path that is not a character device."""
    out: dict[str, tuple[int, int] | None] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            out[parts[0]] = (int(parts[1], 16), int(parts[2], 16))
        elif len(parts) == 2 and parts[1] == "-":
            out[parts[0]] = None
    return out


# ----------------------------------------------------------------------------- concurrent steps
def steps_side_by_side(controller, args: str, command: str, count: int = 2, timeout: float = 60.0) -> list[str]:
    """Start ``count`` ``srun <args>`` steps of ``command`` at once from ``controller`` and
    return each step's output (stdout and stderr), in start order. Each step's lines are
    tagged as they arrive, so interleaved output splits back apart."""
    run = "".join(
        f"srun {args} /bin/sh -c {shlex.quote(command)} 2>&1 | sed 's/^/S{i} /' & " for i in range(count)
    ) + "wait"
    text = controller.run(run, timeout=timeout).stdout
    return ["\n".join(line[len(f"S{i} "):] for line in text.splitlines() if line.startswith(f"S{i} "))
            for i in range(count)]
