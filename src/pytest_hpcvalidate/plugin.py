"""The pytest plugin (entry point ``pytest11: hpcvalidate``): options, markers, session
fixtures and the layer gate. Thin on purpose: the work is in config/, providers/,
probes/ and report/.

Without ``--hpc-config`` the plugin only registers its options and markers; ordinary test
runs are unchanged.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from . import capabilities
from .config import ConfigError, load_config
from .layering import LayerGate, placement
from .report.plugin import ReportPlugin
from .sampling import pair_id, ring_pairs
from .transport import TransportError

SUITES_DIR = Path(__file__).resolve().parent / "suites"
if not SUITES_DIR.is_dir():  # an editable install of a checkout: suites/ at the top level
    SUITES_DIR = Path(__file__).resolve().parents[2] / "suites"

MARKERS = (
    "layer(n): the validation layer (1 network/PCIe ... 5 storage); a failure blocks higher layers",
    "area(name): the sign-off area (network, pcie, gpu, slurm, gres, cgroup, mpi, containers, storage)",
    "requires(capability): skip with a reason when the cluster lacks the capability (gpu, containers, "
    "storage, accounting, mutation, fault-injection, ...)",
    "mutates(reason): the check changes cluster state (drain/resume, restarts, configs); on an existing cluster "
    "it is skipped unless --hpc-allow-mutation",
    "hpc_not_applicable(reason): the config rules the check out (set by the plugin for per-node checks "
    "without such nodes)",
)

HPC = pytest.StashKey["HpcState"]()


class HpcState:
    """Per-session state of the plugin."""

    def __init__(self, config: pytest.Config):
        self.pytest_config = config
        self.model = None
        self.config_path: str | None = None
        self.gate = LayerGate()
        self.placements: dict[str, object] = {}
        #: what the provider had to mend on attaching, in xdist workers (see the cluster's own notes)
        self.notes: list[str] = []


def _opt(config: pytest.Config, name: str):
    value = config.getoption(name)
    if value in (None, False):
        ini = config.getini(name.replace("-", "_"))
        return ini if ini not in ("", None, []) else value
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hpcvalidate", "HPC cluster validation (pytest-hpcvalidate)")
    group.addoption("--hpc-config", dest="hpc_config", metavar="FILE", help="cluster description (YAML) to validate")
    group.addoption("--hpc-provider", dest="hpc_provider", choices=("local", "libvirt", "existing"),
                    help="override the config's provider")
    group.addoption("--hpc-strict", dest="hpc_strict", action="store_true", default=False,
                    help="acceptance mode: a skipped check of something the config declares fails")
    group.addoption("--hpc-keep", dest="hpc_keep", action="store_true", default=False,
                    help="leave a provisioned cluster up after the run and print how to reach it")
    group.addoption("--hpc-reuse", dest="hpc_reuse", action="store_true", default=False,
                    help="run against the cluster a previous --hpc-keep run left up (local provider), "
                         "and leave it up; no provisioning")
    group.addoption("--hpc-allow-mutation", dest="hpc_allow_mutation", action="store_true", default=False,
                    help="allow checks that change an existing cluster (drain/resume, restarts)")
    group.addoption("--hpc-report-dir", dest="hpc_report_dir", metavar="DIR", default=None,
                    help="where Allure results and the sign-off summary go (default: reports/)")
    group.addoption("--hpc-attach-output", dest="hpc_attach_output", action="store_true", default=False,
                    help="attach every command's stdout/stderr to the Allure report, also of passing checks "
                         "(default: only of failing ones; secrets are always masked)")
    group.addoption("--hpc-baseline", dest="hpc_baseline", metavar="FILE", default=None,
                    help="metrics.json of an earlier run: a metric worse than it by more than "
                         "thresholds.regression_tolerance_pct fails")
    for name, kind, help_ in (
        ("hpc_config", "string", "default for --hpc-config"),
        ("hpc_provider", "string", "default for --hpc-provider"),
        ("hpc_strict", "bool", "default for --hpc-strict"),
        ("hpc_keep", "bool", "default for --hpc-keep"),
        ("hpc_reuse", "bool", "default for --hpc-reuse"),
        ("hpc_allow_mutation", "bool", "default for --hpc-allow-mutation"),
        ("hpc_report_dir", "string", "default for --hpc-report-dir"),
    ):
        parser.addini(name, help_, type=kind, default=None if kind == "string" else False)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    state = HpcState(config)
    config.stash[HPC] = state
    # the report plugin is inert until a cluster config is loaded; registering it always
    # keeps its fixtures (``metric``) resolvable, so suites skip cleanly without --hpc-config
    config.pluginmanager.register(ReportPlugin(config, state), "hpcvalidate-report")
    path = _opt(config, "hpc_config")
    if not path:
        return
    try:
        model = load_config(path)
    except ConfigError as exc:
        lines = exc.lines()
        noun = "problem" if len(lines) == 1 else "problems"
        raise pytest.UsageError(
            f"invalid cluster config {path} ({len(lines)} {noun}):\n" + "\n".join(f"  {line}" for line in lines)
        ) from None
    provider = _opt(config, "hpc_provider")
    if provider:
        model = model.model_copy(update={"provider": provider})
    if model.provider == "existing":  # discover: slurm completes the node list before collection
        from .providers import ProvisioningError
        from .providers.existing import resolve_model

        try:
            model = resolve_model(model)
        except ProvisioningError as exc:
            raise pytest.UsageError(f"cluster config {path}: {exc}") from None
    state.model = model
    state.config_path = path
    report_dir = Path(_opt(config, "hpc_report_dir") or "reports")
    state.report_dir = report_dir
    if config.pluginmanager.hasplugin("allure_pytest") and not getattr(config.option, "allure_report_dir", None):
        config.option.allure_report_dir = str(report_dir / "allure-results")
    if config.args_source != pytest.Config.ArgsSource.ARGS and SUITES_DIR.is_dir():
        config.args = [str(SUITES_DIR)]
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def _sigterm_to_interrupt(signum, frame):  # pragma: no cover - exercised by the provider's tests
    raise KeyboardInterrupt("SIGTERM")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(HPC, None)
    if state is None or state.model is None:
        return None
    m = state.model
    nodes = m.resolved_nodes()
    login = sum(n.role == "login" for n in nodes)
    return [
        f"hpcvalidate: cluster {m.name!r} from {state.config_path}, provider {m.provider}, "
        f"{len(nodes)} nodes ({sum(n.role == 'compute' for n in nodes)} compute{f', {login} login' if login else ''})",
        f"hpcvalidate: required for sign-off: {', '.join(m.required_areas())}",
    ]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[HPC]
    for item in items:
        place = placement(item)
        if place is not None:
            state.placements[item.nodeid] = place
    if not state.placements:
        return
    # stable: lower layers first; ordinary tests keep their place at the front
    items.sort(key=lambda it: state.placements[it.nodeid].layer if it.nodeid in state.placements else 0)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    state = item.config.stash[HPC]
    for mark in item.iter_markers("hpc_not_applicable"):  # a per-node check on a config without such nodes
        capabilities.not_applicable(mark.args[0], _use_item_location=True)
    mutates = item.get_closest_marker("mutates")
    if mutates is not None and state.model is not None:
        refused = capabilities.CHECKS["mutation"](state)
        if refused:
            _skip_here(f"{', '.join(map(str, mutates.args)) or 'this check'}: {refused}")
    place = state.placements.get(item.nodeid)
    if place is None:
        return
    reason = state.gate.reason(place.layer)
    if reason:
        _skip_here(reason)
    for mark in item.iter_markers("requires"):
        for capability in mark.args:
            missing = capabilities.missing(capability, state)
            if missing and capability in capabilities.RUN_CAPABILITIES:
                _skip_here(missing)
            elif missing:
                capabilities.not_applicable(missing, _use_item_location=True)


def _skip_here(reason: str) -> None:
    """Skip reported at the test's own location (as skipif marks are), not at this file."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    state = item.config.stash[HPC]
    # a node that cannot be reached is an infrastructure error on its own checks: one line
    # naming it (no traceback), and it does not block the other nodes' higher layers
    infra = call.excinfo is not None and call.excinfo.errisinstance(TransportError)
    if infra:
        report.longrepr = f"infrastructure error ({call.excinfo.typename}) {call.excinfo.value}"
    place = state.placements.get(item.nodeid)
    if place is None:
        return report
    not_applicable = call.excinfo is not None and capabilities.is_not_applicable(call.excinfo.value)
    if report.skipped and _opt(item.config, "hpc_strict") and state.model is not None and not not_applicable:
        area = place.area
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if area in state.model.declared_areas() and not reason.startswith("Skipped: blocked by"):
            report.outcome = "failed"
            report.longrepr = (f"--hpc-strict: area '{area}' is declared in the config but this check was skipped: "
                               f"{reason.removeprefix('Skipped: ')}")
    if report.failed and not infra:
        state.gate.record_failure(place.layer, item.nodeid)
    return report


# ----------------------------------------------------------------------------- xdist
@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist controller: provision once, before the first worker starts; workers attach."""
    from .lifecycle import controller_provision

    state = node.config.stash[HPC]
    if state.model is None or _opt(node.config, "hpc_reuse"):
        return  # nothing to provision: with --hpc-reuse every worker attaches by itself
    node.workerinput.update(controller_provision(node.config, state.model))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """xdist controller: what a worker's provider had to mend on attaching, for the summary."""
    state = node.config.stash.get(HPC, None)
    if state is not None:
        state.notes += [n for n in getattr(node, "workeroutput", {}).get("hpc_notes", []) if n not in state.notes]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """xdist controller: destroy the cluster it provisioned (before the terminal summary); an
    xdist worker: hand its provider's notes to the controller."""
    from .lifecycle import controller_finish

    state = session.config.stash.get(HPC, None)
    if state is not None and hasattr(session.config, "workeroutput"):
        session.config.workeroutput["hpc_notes"] = list(getattr(getattr(state, "cluster", None), "notes", None) or ())
    controller_finish(session.config)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def hpc_config(request: pytest.FixtureRequest):
    """The validated :class:`ClusterConfig` given with ``--hpc-config``."""
    state = request.config.stash[HPC]
    if state.model is None:
        pytest.skip("no cluster config: run with --hpc-config FILE")
    return state.model


@pytest.fixture(scope="session")
def thresholds(hpc_config):
    """The thresholds every suite asserts against (config values over documented defaults)."""
    return hpc_config.thresholds


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, hpc_config):
    """The cluster under test: provisioned once per run (or attached to), destroyed at the end."""
    from .lifecycle import session_cluster

    yield from session_cluster(request.config, hpc_config)


#: fixture name -> which configured nodes it is parametrized over (one test per node), and
#: the skip reason when the config has none of them
NODE_PARAMS = {
    "node_name": (lambda m: [n.name for n in m.resolved_nodes()], "the config declares no nodes"),
    "compute_name": (lambda m: [n.name for n in m.resolved_nodes() if n.role == "compute"],
                     "requires compute nodes: the config declares none"),
    "peer_name": (lambda m: [n.name for n in m.resolved_nodes() if n.role != "controller"],
                  "requires compute or login nodes: the config declares none"),
    "login_name": (lambda m: [n.name for n in m.resolved_nodes() if n.role == "login"],
                   "requires login nodes: the config declares none (login)"),
    "gpu_node_name": (lambda m: [n.name for n in m.resolved_nodes() if n.gpus], "requires gpu: the config gives no node GPUs"),
    "monitored_name": (lambda m: m.monitored_nodes(), "requires monitoring: the config has no monitoring section"),
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Per-node checks: a test asking for ``node``/``compute_node``/``gpu_node`` runs once per
    configured node, so a report names the node that is wrong."""
    state = metafunc.config.stash.get(HPC, None)
    model = state.model if state is not None else None
    for fixture, (pick, none_reason) in NODE_PARAMS.items():
        if fixture in metafunc.fixturenames:
            names = pick(model) if model is not None else []
            if names:
                metafunc.parametrize(fixture, names, ids=names, scope="session")
            else:  # pytest's own "got empty parameter set" would tell an operator nothing
                reason = none_reason if model is not None else "no --hpc-config given"
                metafunc.parametrize(fixture, [pytest.param(None, marks=pytest.mark.hpc_not_applicable(reason))],
                                     ids=["none"], scope="session")
    if "pair_names" in metafunc.fixturenames:
        pairs = []
        if model is not None:
            names = [n.name for n in model.resolved_nodes()]
            pairs = ring_pairs(names, model.thresholds.bandwidth_pairs_max)
        metafunc.parametrize("pair_names", pairs, ids=[pair_id(p) for p in pairs], scope="session")


@pytest.fixture(scope="session")
def node(cluster, node_name):
    """One node of the cluster (the test runs once per node)."""
    return cluster.node(node_name)


@pytest.fixture(scope="session")
def compute_node(cluster, compute_name):
    """One compute node (the test runs once per compute node)."""
    return cluster.node(compute_name)


@pytest.fixture(scope="session")
def peer_node(cluster, peer_name):
    """One node other than the controller: a compute or login node, each of which must agree
    with the controller (clock, munge, slurm.conf). The test runs once per such node."""
    return cluster.node(peer_name)


@pytest.fixture(scope="session")
def login_node(cluster, login_name):
    """One login (submit) node (the test runs once per login node)."""
    return cluster.node(login_name)


@pytest.fixture(scope="session")
def gpu_node(cluster, gpu_node_name):
    """One compute node the config gives GPUs (the test runs once per such node)."""
    return cluster.node(gpu_node_name)


@pytest.fixture(scope="session")
def monitored_node(cluster, monitored_name):
    """One node ``monitoring.nodes`` names (the test runs once per such node)."""
    return cluster.node(monitored_name)


@pytest.fixture
def each_node(request: pytest.FixtureRequest, cluster):
    """``each_node(probe)`` → ``probe(node)`` for this per-node test's node, run for all the
    check's nodes at once by its first test (see :mod:`pytest_hpcvalidate.ahead`)."""
    from .ahead import gather

    return lambda probe: gather(request, cluster, probe)


@pytest.fixture(scope="session")
def node_pair(cluster, pair_names):
    """(sender, receiver): node pairs of a ring over all nodes, thinned to
    ``thresholds.bandwidth_pairs_max`` on large clusters (the test runs once per pair)."""
    return cluster.node(pair_names[0]), cluster.node(pair_names[1])


@pytest.fixture(scope="session")
def controller(cluster):
    return cluster.controller


@pytest.fixture(scope="session")
def node_spec(hpc_config):
    """The configured facts of every node: {name: ResolvedNode}."""
    return {n.name: n for n in hpc_config.resolved_nodes()}


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    state = config.stash.get(HPC, None)
    if state is None or state.model is None:
        return
    seconds = getattr(state, "provision_seconds", None)
    if seconds is not None:
        terminalreporter.write_line(f"hpcvalidate: provisioned {state.model.name!r} in {seconds:.2f}s")
    for note in dict.fromkeys([*(getattr(getattr(state, "cluster", None), "notes", None) or ()), *state.notes]):
        terminalreporter.write_line(f"hpcvalidate: {note}")
    hint = getattr(state, "kept_hint", None)
    if hint:
        terminalreporter.write_sep("=", "hpcvalidate: cluster left running (--hpc-keep)")
        for line in hint.splitlines():
            terminalreporter.write_line(line)
