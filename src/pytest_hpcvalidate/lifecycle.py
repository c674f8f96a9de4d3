"""The session's cluster: provision once (with progress), hand it to every test, destroy it.

Under pytest-xdist the controller process provisions (``pytest_configure_node`` in
plugin.py) and workers attach to the same cluster through the provider's attach handle;
only the process that provisioned destroys. Destruction runs on success, failure,
exceptions and Ctrl-C; ``--hpc-keep`` leaves the cluster up and prints how to reach it.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import pytest

from .providers import ProvisioningError, get_provider
from .transport import TransportError


@contextmanager
def progress_display(config: pytest.Config, title: str) -> Iterator:
    """A rich live status line on the real terminal (outside pytest's capture)."""
    from rich.console import Console

    capman = config.pluginmanager.getplugin("capturemanager")
    quiet = config.getoption("verbose") < 0 or config.pluginmanager.hasplugin("xdist.looponfail")
    console = Console(stderr=True)
    start = time.monotonic()
    suspend = capman.global_and_fixture_disabled() if capman else _null()
    with suspend:
        if quiet or not console.is_terminal:
            def report(step: str, node: str = "", detail: str = "") -> None:
                return None

            yield report
            return
        with console.status(f"{title}: starting") as status:
            def report(step: str, node: str = "", detail: str = "") -> None:
                where = f" [{node}]" if node else ""
                extra = f" {detail}" if detail else ""
                status.update(f"{title}: {step}{where}{extra} ({time.monotonic() - start:.1f}s)")

            yield report
        console.print(f"{title}: ready in {time.monotonic() - start:.2f}s")


@contextmanager
def _null():
    yield


def provision(config: pytest.Config, model):
    """Provision ``model`` with its provider; returns (provider, cluster, seconds)."""
    provider = get_provider(model.provider)
    start = time.monotonic()
    try:
        with progress_display(config, f"provisioning {model.provider} cluster {model.name!r}") as report:
            cluster = provider.provision(model, report)
    except BaseException:
        provider.destroy()
        raise
    return provider, cluster, time.monotonic() - start


def session_cluster(config: pytest.Config, model):
    """Generator body of the ``cluster`` session fixture."""
    from .plugin import HPC, _opt

    state = config.stash[HPC]
    workerinput = getattr(config, "workerinput", {})
    if workerinput.get("hpc_provision_error"):
        pytest.fail(workerinput["hpc_provision_error"], pytrace=False)
    attach = workerinput.get("hpc_attach")
    if attach is not None:  # an xdist worker: the controller owns the cluster
        provider = get_provider(model.provider)
        cluster = provider.attach(model, attach)
        state.cluster = cluster
        yield cluster
        cluster.close()
        return
    if _opt(config, "hpc_reuse"):  # a cluster a --hpc-keep run left up: attach, leave it up
        try:
            cluster = get_provider(model.provider).attach(model, None)
        except (ProvisioningError, TransportError) as exc:
            pytest.fail(f"--hpc-reuse: cannot attach to {model.provider} cluster {model.name!r}: {exc}", pytrace=False)
        state.cluster = cluster
        yield cluster
        cluster.close()
        return
    owned = getattr(state, "owned", None)
    if owned is not None:  # provisioned earlier in this process (xdist controller path)
        yield owned[1]
        return
    try:
        provider, cluster, seconds = provision(config, model)
    except (ProvisioningError, TransportError) as exc:
        pytest.fail(_failed(model, exc), pytrace=False)
    state.provision_seconds = seconds
    state.cluster = cluster
    try:
        yield cluster
    finally:
        finish(config, provider, cluster)


def finish(config: pytest.Config, provider, cluster) -> None:
    """Destroy the cluster, or with --hpc-keep leave it up and remember how to reach it."""
    from .plugin import HPC, _opt

    state = config.stash[HPC]
    cluster.close()
    if _opt(config, "hpc_keep") and provider.creates_cluster:  # an existing cluster's run still cleans up
        from .providers.handoff import write_kept_cluster

        state.kept_hint = cluster.access_hint or f"cluster {cluster.name} left running"
        kept = write_kept_cluster(state.model, cluster, state.report_dir)
        state.kept_hint += f"\nvalidate it as an existing cluster: pytest --hpc-config {kept}"
        return
    provider.destroy()


def _failed(model, exc: BaseException) -> str:
    return f"provisioning the {model.provider} cluster {model.name!r} failed: {exc}"


def controller_provision(config: pytest.Config, model) -> dict:
    """On the xdist controller: provision on the first worker's configure; what workers need."""
    from .plugin import HPC

    state = config.stash[HPC]
    if not hasattr(state, "controller_handoff"):
        try:
            provider, cluster, seconds = provision(config, model)
        except (ProvisioningError, TransportError) as exc:
            state.controller_handoff = {"hpc_provision_error": _failed(model, exc)}
        else:
            state.owned = (provider, cluster)
            state.provision_seconds = seconds
            state.cluster = cluster
            state.controller_handoff = {"hpc_attach": provider.attach_handle()}
    return state.controller_handoff


def controller_finish(config: pytest.Config) -> None:
    """On the xdist controller at the very end: destroy what it provisioned."""
    from .plugin import HPC

    state = config.stash.get(HPC, None)
    owned = getattr(state, "owned", None) if state is not None else None
    if owned is None or hasattr(config, "workerinput"):
        return
    state.owned = None
    finish(config, *owned)
