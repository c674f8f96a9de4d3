"""The reporting plugin: Allure labels, command and metric steps, the baseline comparison,
Allure run files, the cluster fingerprint and the sign-off.

Registered by the main plugin in every run. It reads ``state`` (the main plugin's
``HpcState``) lazily and acts only when ``state.model`` is set: without ``--hpc-config``
the ``metric`` fixture still resolves and nothing is written.

Under pytest-xdist it runs in every process: workers label tests and record metrics (which
travel with the test reports); only the controller (no ``config.workerinput``) writes
``metrics.json``, ``signoff.json``/``signoff.md``, ``environment.properties`` and
``categories.json``, ``signoff.html`` and the sign-off's Allure result, and sets the exit code.

Commands reach the plugin through ``cluster.COMMAND_OBSERVERS`` (every ``Node.run``) and
are written as Allure steps of the test phase that ran them (``evidence``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from .. import cluster as cluster_module
from . import allure_files, baseline, cluster_facts, evidence, labels, signoff, signoff_html
from .fingerprint import fingerprint
from .metrics import MISSED, Metric, evaluate, write_metrics
from .redact import redact

METRICS = pytest.StashKey[list]()
_SENT = pytest.StashKey[int]()
#: how a test fails that recorded a metric worse than its baseline (and none that missed a threshold)
REGRESSED = "metric regressed from its baseline"


class MetricRecorder:
    """The ``metric`` fixture's value: records metrics for one test."""

    def __init__(self, item: pytest.Item, plugin: "ReportPlugin | None" = None) -> None:
        self.item = item
        self.plugin = plugin

    def __call__(self, name: str, value: float, unit: str = "", threshold: float | None = None,
                 op: str = ">=", node: str | None = None) -> Metric:
        m = evaluate(name, value, unit, threshold, op, node, nodeid=self.item.nodeid)
        if self.plugin is not None:
            m = self.plugin.judge(m)
        self.item.stash.setdefault(METRICS, []).append(m)
        if self.plugin is not None and self.plugin.evidence.active:
            self.plugin.evidence.add_metric(m)  # a step in time order with the commands
        else:
            evidence.write_metric(m)
        return m

    @property
    def recorded(self) -> list[Metric]:
        return list(self.item.stash.get(METRICS, []))

    def __repr__(self) -> str:
        return f"<metric recorder for {self.item.nodeid}: {len(self.recorded)} recorded>"


class ReportPlugin:
    def __init__(self, config: pytest.Config, state) -> None:
        self.config = config
        self.state = state
        self.outcomes = signoff.OutcomeCollector()
        #: metrics of the run itself, not of one test (provisioning time)
        self.run_metrics: list[Metric] = []
        self.signoff: signoff.SignOff | None = None
        self._ran = False
        self._node_names: frozenset[str] | None = None
        self.evidence = evidence.EvidenceLog()
        cluster_module.COMMAND_OBSERVERS.append(self.evidence.observe)
        self.baseline: baseline.Baseline | None = None
        #: software versions read from the cluster's nodes (gathered once per process)
        self.cluster_facts: dict[str, str] = {}
        self._facts_state = "none"  # none -> unsent -> sent

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.evidence.observe in cluster_module.COMMAND_OBSERVERS:
            cluster_module.COMMAND_OBSERVERS.remove(self.evidence.observe)

    # ------------------------------------------------------------------ helpers
    @property
    def active(self) -> bool:
        return getattr(self.state, "model", None) is not None

    @property
    def is_controller(self) -> bool:
        """The process that writes files: the only one without xdist, else the controller."""
        return not hasattr(self.config, "workerinput")

    def _writes(self) -> bool:
        return self.active and self.is_controller and not self.config.option.collectonly

    def report_dir(self) -> Path:
        base = Path(self.config.invocation_params.dir)
        return base / Path(getattr(self.state, "report_dir", None) or "reports")

    def allure_dir(self) -> Path | None:
        opt = getattr(self.config.option, "allure_report_dir", None)
        return Path(self.config.invocation_params.dir) / opt if opt else None

    @property
    def attach_output(self) -> bool:
        return bool(self.config.getoption("hpc_attach_output", False))

    def _place(self, nodeid: str):
        placements = getattr(self.state, "placements", None) or {}
        return placements.get(nodeid)

    def record_metric(self, name, value, unit="", threshold=None, op=">=", node=None) -> Metric:
        """A metric of the run itself (no test): in metrics.json and the sign-off, and it
        fails the sign-off when it misses its threshold. Record on the controller."""
        m = self.judge(evaluate(name, value, unit, threshold, op, node))
        self.run_metrics.append(m)
        return m

    def judge(self, m: Metric) -> Metric:
        """``m`` compared with the ``--hpc-baseline`` run (unchanged without one)."""
        if self.baseline is None or not self.active:
            return m
        return baseline.compare(m, self.baseline, self.state.model.thresholds.regression_tolerance_pct)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        path = self.config.getoption("hpc_baseline", None)
        if path and self.active:
            try:
                self.baseline = baseline.load(Path(self.config.invocation_params.dir) / path)
            except baseline.BaselineError as exc:
                raise pytest.UsageError(str(exc)) from None

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture
    def metric(self, request: pytest.FixtureRequest):
        """``metric(name, value, unit, threshold=None, op=">=", node=None) -> Metric``:
        record a measured number for this test and get its verdict (``.passed``,
        ``.message``). ``op`` ``>=`` makes ``threshold`` a minimum, ``<=`` a maximum.
        A metric that misses its threshold fails the test."""
        return MetricRecorder(request.node, self)

    # ------------------------------------------------------------------ per test
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        # before every other setup hook: tests skipped at setup (blocked, requires) get labels too
        place = self._place(item.nodeid)
        if place is not None and self.active:
            if self._node_names is None:
                self._node_names = frozenset(n.name for n in self.state.model.resolved_nodes())
            labels.apply(item, place.layer, place.area, self.state.model, self._node_names)
        self.evidence.begin()
        try:
            return (yield)
        except BaseException as exc:
            self._write_evidence("setup", exc)
            raise
        finally:
            self._write_evidence("setup", None)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        __tracebackhide__ = True
        self.evidence.begin()
        try:
            result = yield  # re-raises what the test raised
        except BaseException as exc:
            self._write_evidence("call", exc)
            raise
        missed = [m for m in item.stash.get(METRICS, []) if not m.passed]
        self._write_evidence("call", AssertionError() if missed else None)
        if missed:  # the test recorded a metric that missed its threshold (or regressed) but did not assert it
            prefix = REGRESSED if all(m.regressed for m in missed) else MISSED
            pytest.fail(f"{prefix}: " + "; ".join(m.message for m in missed), pytrace=False)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item):
        self.evidence.begin()
        try:
            return (yield)
        except BaseException as exc:
            self._write_evidence("teardown", exc)
            raise
        finally:
            self._write_evidence("teardown", None)

    def _write_evidence(self, phase: str, exc: BaseException | None) -> None:
        """The phase's commands and metrics as Allure steps (once: a second call finds none);
        outputs attached when the phase failed or with --hpc-attach-output."""
        if not self.evidence.active:
            return
        events = self.evidence.end()
        evidence.write_steps(events, self.attach_output or evidence.phase_failed(exc), phase)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request: pytest.FixtureRequest):
        result = yield
        if fixturedef.argname == "cluster" and self.active and self._facts_state == "none" and hasattr(result, "run_all"):
            with self.evidence.paused():  # the run's bookkeeping, not the test's evidence
                self.cluster_facts = cluster_facts.gather(result)
            self._facts_state = "unsent"
        return result

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call):
        report = yield
        if self.active and report.sections:
            # captured stdout/stderr/log: Allure attaches them (--allure-no-capture turns that off),
            # junitxml and the terminal show them; none of them may carry a secret
            report.sections = [(title, redact(content)) for title, content in report.sections]
        place = self._place(item.nodeid)
        if place is not None:
            report.hpc_place = {"layer": place.layer, "area": place.area}
        if self._facts_state == "unsent":  # an xdist worker hands them to the controller with a report
            report.hpc_cluster_facts = dict(self.cluster_facts)
            self._facts_state = "sent"
        metrics = item.stash.get(METRICS, [])
        sent = item.stash.get(_SENT, 0)
        if len(metrics) > sent:  # each metric travels once, with the phase that recorded it
            report.hpc_metrics = [m.to_dict() for m in metrics[sent:]]
            item.stash[_SENT] = len(metrics)
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.outcomes.add(report)
        facts = getattr(report, "hpc_cluster_facts", None)
        if facts:
            self.cluster_facts.update(facts)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.outcomes.add_collect_error(report.nodeid, report.longreprtext)

    # ------------------------------------------------------------------ session
    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        # only a run that runs tests signs off (not --collect-only, --fixtures, --markers)
        self._ran = self._writes()
        if self._ran:  # early, so a run killed midway still has them; rewritten at the end
            self._write_allure_files()
        return (yield)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus) -> None:
        if not (self._writes() and self._ran):
            return
        model = self.state.model
        seconds = getattr(self.state, "provision_seconds", None)
        if seconds is not None and not any(m.name == "provision_s" for m in self.run_metrics):
            self.record_metric("provision_s", seconds, "s", model.thresholds.provision_s_max, "<=")
        facts = fingerprint(self.state, self.cluster_facts)
        result = signoff.compute(
            self.outcomes.tests.values(),
            model,
            facts,
            self.run_metrics,
            invocation=shlex.join(["pytest", *self.config.invocation_params.args]),
        )
        if not result.passed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        result.exit_code = int(session.exitstatus)
        self.signoff = result
        out = self.report_dir()
        tests_metrics = [m for t in self.outcomes.tests.values() for m in t.metrics]
        write_metrics(out / "metrics.json", [*tests_metrics, *self.run_metrics], cluster=model.name)
        signoff.write_json(result, out / "signoff.json")
        signoff.write_markdown(result, out / "signoff.md")
        signoff_html.write_html(result, out / "signoff.html")
        self._write_allure_files(facts)
        results = self.allure_dir()
        if results is not None:
            allure_files.write_signoff_result(results, result, signoff_html.fragment(result), signoff.markdown(result))

    def _write_allure_files(self, facts: dict | None = None) -> None:
        results = self.allure_dir()
        if results is None:
            return
        allure_files.write_environment(results, facts if facts is not None else fingerprint(self.state, self.cluster_facts))
        allure_files.write_categories(results)

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config: pytest.Config) -> None:
        s = self.signoff
        if s is None:
            return
        tw = config.get_terminal_writer()
        color = {"PASS": {"green": True}, "FAIL": {"red": True}}[s.verdict]
        terminalreporter.write_sep("=", f"hpcvalidate sign-off: {s.verdict} (cluster {s.cluster!r})", bold=True, **color)
        for line in signoff.terminal_lines(s, tw.fullwidth, tw.hasmarkup):
            terminalreporter.write_line(line)
        where = self.report_dir()
        terminalreporter.write_line(f"sign-off: {where / 'signoff.md'}  metrics: {where / 'metrics.json'}")
        if self.allure_dir() is not None:
            terminalreporter.write_line(f"HTML report: python -m pytest_hpcvalidate report {where}")
        if not s.passed:
            why = [f"{a.area} {a.verdict}" for a in s.areas if a.required and a.verdict != "PASS"]
            why += [m.message for m in s.run_metrics if not m.passed]
            terminalreporter.write_line(f"hpcvalidate: not signed off ({', '.join(why)}): exit code {s.exit_code}")
