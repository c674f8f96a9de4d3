"""Capabilities a check may require (``@pytest.mark.requires("gpu")``) and why one is missing.

``missing(cap, state)`` returns a skip reason naming the missing capability, or None.

Two kinds of skip: a check the config rules out (accounting off, simulated GPUs, a GlusterFS
mount for a BeeGFS check) is *not applicable* (:func:`not_applicable`, and every capability but
those in ``RUN_CAPABILITIES``); a check the config calls for that this run could not do (no
NVML answered on a declared GPU node, no root, mutation not allowed) is a plain skip, which
``--hpc-strict`` turns into a failure.
"""

from __future__ import annotations

from typing import Callable, NoReturn

import pytest


def not_applicable(reason: str, _use_item_location: bool = False) -> NoReturn:
    """Skip the running check because the config rules it out (say why, naming the setting):
    a plain pytest skip (reported as any other), marked so ``--hpc-strict`` leaves it a skip."""
    __tracebackhide__ = True  # the skip is reported at the caller's line, as pytest.skip's is
    skip = pytest.skip.Exception(reason, _use_item_location=_use_item_location)
    skip.hpc_not_applicable = True
    raise skip


def is_not_applicable(exc: BaseException) -> bool:
    return getattr(exc, "hpc_not_applicable", False) is True


def _gpu(state) -> str | None:
    return None if any(n.gpus for n in state.model.resolved_nodes()) else "the config declares no GPUs"


def _nvml(state) -> str | None:
    """Real GPUs somewhere in the config: NVML, PCIe link and CUDA checks apply (not to simulated ones)."""
    real = any(n.gpus and not n.gpu_simulated for n in state.model.resolved_nodes())
    return None if real else "the config declares no real GPUs (none, or only simulated ones)"


def _pcie(state) -> str | None:
    return None if any(n.pcie for n in state.model.resolved_nodes()) else "the config declares no PCIe passthrough devices"


def _containers(state) -> str | None:
    return None if state.model.containers is not None else "the config has no containers section"


def _container_torch(state) -> str | None:
    c = state.model.containers
    if c is None:
        return "the config has no containers section"
    return None if c.expect.torch else "the config does not say the image provides torch (containers.expect.torch)"


def _slurm_oci(state) -> str | None:
    c = state.model.containers
    if c is not None and (c.runtime == "slurm-oci" or c.oci_bundle):
        return None
    return "the config names no OCI bundle for Slurm's --container (containers.oci_bundle)"


def _storage(state) -> str | None:
    """A ``storage`` entry or a node's virtio-fs mount: either is a shared filesystem the L5
    checks run over (a seed config declares its shares only as virtio-fs mounts)."""
    model = state.model
    if model.storage or any(n.virtio_fs for n in model.resolved_nodes()):
        return None
    return "the config declares no shared storage (no storage entry, no virtio-fs mount)"


def _monitoring(state) -> str | None:
    return None if state.model.monitoring is not None else "the config has no monitoring section"


def _alerting(state) -> str | None:
    m = state.model.monitoring
    if m is None:
        return "the config has no monitoring section"
    return None if m.alerting is not None else "the config has no monitoring.alerting section"


def _accounting(state) -> str | None:
    return None if state.model.slurm.accounting else "slurm.accounting is off in the config"


def _memlock(state) -> str | None:
    return None if state.model.slurm.job_memlock is not None else "slurm.job_memlock is null in the config"


def _mutation(state) -> str | None:
    if state.model.provider != "existing":
        return None  # clusters the run made are ours to change
    allowed = state.pytest_config.getoption("hpc_allow_mutation") or state.pytest_config.getini("hpc_allow_mutation")
    return None if allowed else "changes the cluster; pass --hpc-allow-mutation to allow it on an existing cluster"


def _fault_injection(state) -> str | None:
    return None if state.model.provider == "local" else "fault injection exists only on the local provider"


def _root(state) -> str | None:
    """Root on every node: clusters the run made are reached as root; on an existing cluster the
    login user must be root, or existing.sudo allows ``sudo -n`` (``Node.run(..., root=True)``)."""
    model = state.model
    if model.provider != "existing" or (model.existing is not None and model.existing.sudo):
        return None
    from .providers.existing import login_user, node_access, without_root

    plain = without_root(model)
    if not plain:
        return None
    users = sorted({login_user(node_access(model, n)) for n in plain})
    return (f"the run is not root on {', '.join(plain[:8])}{' ...' if len(plain) > 8 else ''} (user "
            f"{', '.join(users)}); set existing.sudo: true to let checks that need root use sudo -n")


CHECKS: dict[str, Callable] = {
    "gpu": _gpu,
    "nvml": _nvml,
    "pcie": _pcie,
    "containers": _containers,
    "container-torch": _container_torch,
    "slurm-oci": _slurm_oci,
    "storage": _storage,
    "monitoring": _monitoring,
    "alerting": _alerting,
    "accounting": _accounting,
    "memlock": _memlock,
    "mutation": _mutation,
    "fault-injection": _fault_injection,
    "root": _root,
}


#: capabilities a run lacks because of how it was started or reaches the cluster, not because
#: the config rules the check out: skips for them stay failures under --hpc-strict
RUN_CAPABILITIES = frozenset({"mutation", "root"})


def missing(capability: str, state) -> str | None:
    if state.model is None:
        return "no cluster config: run with --hpc-config FILE"
    check = CHECKS.get(capability)
    if check is None:
        return f"unknown capability {capability!r} in @pytest.mark.requires (known: {', '.join(CHECKS)})"
    why = check(state)
    return f"requires {capability}: {why}" if why else None
