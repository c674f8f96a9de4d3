"""The provider interface: ``provision(model) -> Cluster`` and ``destroy()``."""

from __future__ import annotations

import abc
import importlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ..cluster import Cluster
    from ..config.model import ClusterConfig

#: a callback providers call while they work: (step, node or "", detail)
ProgressFn = Callable[[str, str, str], None]


def no_progress(step: str, node: str = "", detail: str = "") -> None:
    return None


class ProvisioningError(RuntimeError):
    """Provisioning failed; the message names the step, the node and the fix when known."""


class Provider(abc.ABC):
    kind: str
    #: False for a provider that attaches to what exists: --hpc-keep then has nothing to keep,
    #: and destroy() (which undoes only the run's own jobs and files) always runs
    creates_cluster: bool = True

    @abc.abstractmethod
    def provision(self, model: "ClusterConfig", progress: ProgressFn = no_progress) -> "Cluster":
        """Create (or attach to) the cluster described by ``model``."""

    @abc.abstractmethod
    def destroy(self) -> None:
        """Undo exactly what :meth:`provision` created; safe to call twice or after a failure."""

    def attach(self, model: "ClusterConfig", handle: dict | None) -> "Cluster":
        """The Cluster of a running cluster this object did not provision: an xdist worker's
        (``handle`` from the controller's :meth:`attach_handle`) or ``--hpc-reuse`` (None)."""
        raise ProvisioningError(f"the {self.kind} provider cannot attach to a running cluster")

    def attach_handle(self) -> dict:
        """What an xdist worker needs to :meth:`attach` to the cluster :meth:`provision` made."""
        return {}


class EngineProvider(Provider):
    """A provider that builds clusters with an *engine* object (``LocalCluster``,
    ``LibvirtCluster``): ``engine.up(progress)``, ``.down()``, ``.attach()``, ``.spec.cluster``,
    ``.work_dir``. Subclasses say how to make an engine for a config."""

    def __init__(self, state_root=None):
        self.state_root = state_root or self.default_state_root()
        self._engine = None

    @abc.abstractmethod
    def make_engine(self, model: "ClusterConfig"):
        """A fresh engine for ``model`` under ``self.state_root``."""

    def default_state_root(self):
        raise NotImplementedError

    def provision(self, model, progress: ProgressFn = no_progress):
        self._engine = self.make_engine(model)
        return self._engine.up(progress)

    def destroy(self) -> None:
        if self._engine is not None:
            self._engine.down()

    def attach_handle(self) -> dict:
        if self._engine is None:
            raise RuntimeError("attach_handle() before provision()")
        return {"cluster": self._engine.spec.cluster, "work_dir": str(self._engine.work_dir)}

    def attach(self, model, handle):
        """Rebuild the Cluster of a running cluster from its state file (xdist workers, --hpc-reuse)."""
        return self.make_engine(model).attach()


_PROVIDERS = {
    "local": "pytest_hpcvalidate.providers.local.provider:LocalProvider",
    "libvirt": "pytest_hpcvalidate.providers.libvirt:LibvirtProvider",
    "existing": "pytest_hpcvalidate.providers.existing:ExistingProvider",
}


def get_provider(kind: str, **options) -> Provider:
    """Instantiate the provider named ``kind`` (``local``, ``libvirt``, ``existing``)."""
    try:
        target = _PROVIDERS[kind]
    except KeyError:
        raise ProvisioningError(
            f"unknown provider {kind!r}; choose one of {', '.join(sorted(_PROVIDERS))}"
        ) from None
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("pytest_hpcvalidate"):
            raise ProvisioningError(f"provider {kind!r} is not implemented yet") from None
        raise
    return getattr(module, cls_name)(**options)
