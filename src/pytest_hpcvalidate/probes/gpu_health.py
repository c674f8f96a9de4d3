"""The judgement of the GPU checks: configured expectations against the facts of
:mod:`.gpu`, as lists of problems an operator can act on.

Each ``*_problems`` function returns one line per thing that is wrong, naming the node, the
GPU's bus id, what was expected and what was found; an empty list means healthy. The suites
assert on these functions and the project's tests feed them recorded and degraded real
outputs, so the verdict a user sees is the one the tests prove.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import gpu_models
from ..config.gpu_models import GpuModel
from .gpu import GpuFacts, NodeGpuFacts, PciFunction, known
from .isolation import overlapped

#: P-states at and above this are power saving: the GPU may run its link below its trained
#: speed (NVIDIA GPUs lower the PCIe generation when idle), so the generation is judged by the
#: link's maximum there; P0-P4 (and an unknown state) are judged by the current generation
IDLE_PSTATE = 5
#: clock event reasons that mean the hardware is protecting itself (not a setting)
HARDWARE_SLOWDOWNS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")
#: a GPU's memory as NVML reports it may be this much below the datasheet's nominal size
MEMORY_TOLERANCE = 0.95


@dataclass(frozen=True)
class GpuExpectation:
    """What one node's GPUs must look like: the config, with the model table's defaults."""

    node: str
    count: int
    model: str | None = None                 # NVML product name; None: any
    device_ids: frozenset[str] = frozenset()  # PCI device IDs; empty: not checked
    driver: str = "nvidia"
    memory_gb: float | None = None
    pcie_gen: int | None = None
    pcie_width: int | None = None
    min_driver: str | None = None
    ecc_required: bool | None = None
    ecc_uncorrected_max: int = 0
    persistence: bool | None = True

    def spec_for(self, gpu: GpuFacts | None = None) -> GpuModel | None:
        """The model table's row for the configured model, else for the GPU found."""
        return gpu_models.by_name(self.model) or (gpu_models.by_name(gpu.name) if gpu else None)

    def link_for(self, gpu: GpuFacts) -> tuple[int | None, int | None]:
        """(generation, width) the GPU's link must have: config, else the model's."""
        spec = self.spec_for(gpu)
        return (self.pcie_gen or (spec.pcie_gen if spec else None),
                self.pcie_width or (spec.pcie_width if spec else None))


def expectation_for(node) -> GpuExpectation:
    """The expectation of a :class:`~pytest_hpcvalidate.config.model.ResolvedNode` with GPUs."""
    cfg = node.gpu_config
    spec = gpu_models.by_name(node.gpu_model)
    min_driver = (cfg.min_driver_version if cfg else None) or (spec.min_driver if spec else None)
    ecc = cfg.ecc_required if cfg and cfg.ecc_required is not None else (spec.ecc_default if spec else None)
    return GpuExpectation(
        node=node.name,
        count=node.gpus,
        model=node.gpu_model,
        device_ids=frozenset(spec.device_ids) if spec else frozenset(),
        driver=cfg.driver if cfg else "nvidia",
        memory_gb=spec.memory_gb if spec else None,
        pcie_gen=cfg.pcie_gen if cfg else None,
        pcie_width=cfg.pcie_width if cfg else None,
        min_driver=min_driver,
        ecc_required=ecc,
        ecc_uncorrected_max=cfg.ecc_uncorrected_max if cfg else 0,
        persistence=cfg.persistence_mode if cfg else True,
    )


def _where(exp: GpuExpectation, gpu: GpuFacts) -> str:
    return f"{exp.node} GPU {gpu.index} ({gpu.bus_id})"


# ----------------------------------------------------------------------------- versions
def version_tuple(version: str) -> tuple[int, ...]:
    """``580.159.04`` → (580, 159, 4); non-numeric parts end the version (``535.54.03-beta``)."""
    out = []
    for part in version.strip().split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group(0)))
        if m.end() != len(part):
            break
    return tuple(out)


def version_at_least(found: str, minimum: str) -> bool:
    """Whether driver ``found`` is ``minimum`` or newer (missing trailing parts count as 0)."""
    a, b = version_tuple(found), version_tuple(minimum)
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) >= b + (0,) * (width - len(b))


# ----------------------------------------------------------------------------- PCI bus (sysfs)
def pci_problems(exp: GpuExpectation, functions: list[PciFunction]) -> list[str]:
    """The GPUs are on the bus: as many NVIDIA display functions as configured, with the
    model's device IDs, each bound to the expected driver."""
    gpus = [f for f in functions if f.vendor == gpu_models.NVIDIA_VENDOR and f.is_display]
    out = []
    if len(gpus) != exp.count:
        found = ", ".join(f.describe() for f in gpus) or "none"
        out.append(f"{exp.node}: {len(gpus)} NVIDIA GPUs on the PCI bus, the config says {exp.count} (found: {found})")
    for f in gpus:
        if exp.device_ids and f.device not in exp.device_ids:
            want = ", ".join(f"10de:{d}" for d in sorted(exp.device_ids))
            out.append(f"{exp.node} {f.address}: PCI ID 10de:{f.device}, expected {want} ({exp.model})")
        if f.driver != exp.driver:
            out.append(f"{exp.node} {f.address}: bound to driver {f.driver or 'none'}, expected {exp.driver}")
    return out


# ----------------------------------------------------------------------------- NVML
def count_and_model_problems(exp: GpuExpectation, facts: NodeGpuFacts) -> list[str]:
    """NVML sees the configured number of GPUs, of the configured model, with its memory."""
    out = []
    if len(facts.gpus) != exp.count:
        found = ", ".join(f"{g.name} at {g.bus_id}" for g in facts.gpus) or "none"
        out.append(f"{exp.node}: {facts.source} sees {len(facts.gpus)} GPUs, the config says {exp.count} "
                   f"(found: {found})")
    for g in facts.gpus:
        if exp.model and not gpu_models.same_name(g.name, exp.model):
            out.append(f"{_where(exp, g)}: model {g.name!r}, the config says {exp.model!r}")
            continue
        spec = exp.spec_for(g)
        if spec and spec.memory_gb and known(g.memory_total_mib):
            have_gb = int(g.memory_total_mib) * 2**20 / 1e9
            if have_gb < spec.memory_gb * MEMORY_TOLERANCE:
                out.append(f"{_where(exp, g)}: {have_gb:.1f} GB of memory, expected {spec.memory_gb:g} GB ({spec.name})")
    return out


def pcie_link_problems(exp: GpuExpectation, facts: NodeGpuFacts) -> list[str]:
    """Each GPU's link runs at the expected generation and width. Width is judged as it is
    now (a link trained narrower is a bad slot, riser or cable); generation as it is now
    unless the GPU idles in a power-saving P-state, then by the link's maximum."""
    out = []
    for g in facts.gpus:
        link = g.pcie
        want_gen, want_width = exp.link_for(g)
        want_width = want_width or (link.max_width if known(link.max_width) else None)
        idle = known(g.pstate) and int(g.pstate) >= IDLE_PSTATE
        gen_now = link.max_gen if idle else link.gen
        want_gen = want_gen or (None if idle or not known(link.max_gen) else link.max_gen)
        wrong = []
        if want_width and known(link.width) and int(link.width) < want_width:
            wrong.append("width")
        if want_gen and known(gen_now) and int(gen_now) < want_gen:
            wrong.append("generation")
        if not known(link.width) or not known(gen_now):
            wrong.append("unreadable")
        if wrong:
            state = f" (P{g.pstate}: idle, judged by the link's maximum)" if idle else ""
            expected = f"Gen{want_gen or '?'} x{want_width or '?'}"
            out.append(f"{_where(exp, g)}: PCIe link runs at Gen{link.gen} x{link.width}, expected {expected}"
                       f"{state}; the link's maximum is Gen{link.max_gen} x{link.max_width}")
    return out


def driver_problems(exp: GpuExpectation, facts: NodeGpuFacts) -> list[str]:
    if not exp.min_driver:
        return []
    found = facts.driver_version
    buses = ", ".join(g.bus_id for g in facts.gpus) or "no GPUs"
    if not known(found):
        return [f"{exp.node} ({buses}): driver version unreadable ({found}), expected >= {exp.min_driver}"]
    if not version_at_least(str(found), exp.min_driver):
        return [f"{exp.node} ({buses}): NVIDIA driver {found}, expected >= {exp.min_driver}"]
    return []


def _mode(value: object) -> str:
    return ("Enabled" if value else "Disabled") if known(value) else str(value)


def ecc_problems(exp: GpuExpectation, facts: NodeGpuFacts) -> list[str]:
    """ECC on (or off) as required, staying so after a reset, and no uncorrected errors."""
    out = []
    for g in facts.gpus:
        if exp.ecc_required is not None:
            if g.ecc_enabled != exp.ecc_required:
                out.append(f"{_where(exp, g)}: ECC is {_mode(g.ecc_enabled)}, expected {_mode(exp.ecc_required)}")
            elif known(g.ecc_pending) and g.ecc_pending != exp.ecc_required:
                out.append(f"{_where(exp, g)}: ECC becomes {_mode(g.ecc_pending)} at the next reset, "
                           f"expected {_mode(exp.ecc_required)}")
        errors = g.ecc_uncorrected_volatile
        if known(errors) and int(errors) > exp.ecc_uncorrected_max:
            out.append(f"{_where(exp, g)}: {errors} uncorrected volatile ECC errors, expected at most "
                       f"{exp.ecc_uncorrected_max}")
    return out


def memory_repair_problems(exp: GpuExpectation, facts: NodeGpuFacts) -> list[str]:
    """No retired pages or remapped rows waiting for a reset, no failed row remapping. GPUs
    support one mechanism or the other (pages up to Volta, rows from Ampere on); the other
    reads "not supported", which is fine."""
    out = []
    for g in facts.gpus:
        if g.retired_pages_pending is True:
            out.append(f"{_where(exp, g)}: retired pages pending (expected none; reset the GPU to retire them)")
        if g.remapped_rows_pending is True:
            out.append(f"{_where(exp, g)}: row remapping pending (expected none; reset the GPU to apply it)")
        if g.remapped_rows_failed is True:
            out.append(f"{_where(exp, g)}: row remapping failed (expected no failure; the GPU needs service)")
        for name in ("retired_pages_pending", "remapped_rows_pending", "remapped_rows_failed"):
            value = getattr(g, name)
            if not known(value) and str(value).startswith("error"):
                out.append(f"{_where(exp, g)}: {name.replace('_', ' ')} unreadable ({value}), expected a reading")
    return out


def persistence_problems(exp: GpuExpectation, facts: NodeGpuFacts) -> list[str]:
    if exp.persistence is None:
        return []
    return [f"{_where(exp, g)}: persistence mode {_mode(g.persistence)}, expected {_mode(exp.persistence)}"
            for g in facts.gpus if g.persistence != exp.persistence]


def slowdown_problems(exp: GpuExpectation, facts: NodeGpuFacts) -> list[str]:
    """No GPU slowed down by the hardware (thermal, power brake, HW slowdown)."""
    out = []
    for g in facts.gpus:
        if known(g.throttle_reasons):
            active = sorted(set(g.throttle_reasons) & set(HARDWARE_SLOWDOWNS))
            if active:
                out.append(f"{_where(exp, g)}: clocks slowed down by {', '.join(active)} "
                           f"(expected none; {g.temperature_c} C, {g.power_w} W)")
    return out


#: every NVML health judgement, in the order the L1 suite reports them
HEALTH_CHECKS = {
    "count_and_model": count_and_model_problems,
    "pcie_link": pcie_link_problems,
    "driver": driver_problems,
    "ecc": ecc_problems,
    "memory_repair": memory_repair_problems,
    "persistence": persistence_problems,
    "slowdown": slowdown_problems,
}


# ----------------------------------------------------------------------------- inside jobs (L3)
def _count(value: object) -> int | None:
    return int(value) if known(value) else None


def job_visibility_problems(node: str, requested: int, facts: NodeGpuFacts) -> list[str]:
    """A step given ``requested`` GPUs (0: none) sees exactly that many through NVML, CUDA and
    ``CUDA_VISIBLE_DEVICES``. A step without GPUs may find NVML or CUDA not initialising at
    all: that is seeing none."""
    nvml = len(facts.gpus)
    cuda = _count(facts.cuda_device_count)
    cvd = facts.cuda_visible_devices
    cvd_text = "unset" if cvd is None else (",".join(cvd) or "empty")
    what = f"a step with --gres=gpu:{requested}" if requested else "a step without GRES"
    if not facts.start:  # the probe printed nothing: seeing no GPU would prove nothing
        return [f"{node}: {what}: the GPU probe did not run in the step ({facts.error or 'no output'}); "
                "check the node's Python (gpus.python)"]
    out = []
    if nvml != requested:
        if facts.available:
            seen = ", ".join(g.bus_id for g in facts.gpus) or "none"
            out.append(f"{node}: {what}: {facts.source} sees {nvml} GPUs ({seen}), expected {requested}")
        else:
            out.append(f"{node}: {what}: neither NVML nor nvidia-smi sees a GPU ({facts.error}), expected {requested}")
    if requested and cuda is None:
        out.append(f"{node}: {what}: CUDA gives no device count ({facts.cuda_device_count}), expected {requested}")
    elif cuda is not None and cuda != requested:
        out.append(f"{node}: {what}: CUDA enumerates {cuda} devices, expected {requested}")
    if len(cvd or ()) != requested:
        out.append(f"{node}: {what}: CUDA_VISIBLE_DEVICES={cvd_text}, expected {requested} entries")
    return out


def shared_gpu_problems(node: str, a: NodeGpuFacts, b: NodeGpuFacts) -> list[str]:
    """Two concurrent 1-GPU steps on one node must each see one GPU, and not the same one."""
    out = [p for facts in (a, b) for p in job_visibility_problems(node, 1, facts)]
    if not overlapped(a, b):
        out.append(f"{node}: the two 1-GPU steps ran one after the other, not side by side")
    shared = {g.uuid for g in a.gpus} & {g.uuid for g in b.gpus}
    if shared:
        out.append(f"{node}: two concurrent 1-GPU steps both see {', '.join(sorted(shared))}")
    return out


def gres_file_problems(node: str, files: list[str], numbers: dict[str, tuple[int, int] | None],
                       facts: NodeGpuFacts) -> list[str]:
    """gres.conf's ``File=`` entries are this node's real GPUs: character devices of NVIDIA's
    major 195 whose minors are those of the GPUs NVML sees, one file per GPU."""
    out = []
    minors = {int(g.minor): g.bus_id for g in facts.gpus if known(g.minor)}
    if len(files) != len(facts.gpus):
        out.append(f"{node}: gres.conf names {len(files)} GPU device files ({', '.join(files) or 'none'}), "
                   f"the node has {len(facts.gpus)} GPUs")
    for path in files:
        num = numbers.get(path)
        if num is None:
            out.append(f"{node}: gres.conf names {path}, which is not a character device on the node")
        elif num[0] != 195:
            out.append(f"{node}: gres.conf names {path}, device {num[0]}:{num[1]}, expected major 195 (nvidia)")
        elif minors and num[1] not in minors:
            out.append(f"{node}: gres.conf names {path} (minor {num[1]}), but no GPU has that minor "
                       f"(GPUs: {', '.join(f'{m} {b}' for m, b in sorted(minors.items()))})")
    return out
