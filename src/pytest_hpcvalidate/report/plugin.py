"""The reporting plugin: Allure labels, metrics, Allure run files and the sign-off.

Registered by the main plugin in every run. It reads ``state`` (the main plugin's
``HpcState``) lazily and acts only when ``state.model`` is set: without ``--hpc-config``
the ``metric`` fixture still resolves and nothing is written.

Under pytest-xdist it runs in every process: workers label tests and record metrics (which
travel with the test reports); only the controller (no ``config.workerinput``) writes
``metrics.json``, ``signoff.json``/``signoff.md``, ``environment.properties`` and
``categories.json`` and sets the exit code.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from . import allure_files, labels, signoff
from .fingerprint import fingerprint
from .redact import redact
from .metrics import MISSED, Metric, attach_to_allure, evaluate, write_metrics

METRICS = pytest.StashKey[list]()
_SENT = pytest.StashKey[int]()


class MetricRecorder:
    """The ``metric`` fixture's value: records metrics for one test."""

    def __init__(self, item: pytest.Item) -> None:
        self.item = item

    def __call__(self, name: str, value: float, unit: str = "", threshold: float | None = None,
                 op: str = ">=", node: str | None = None) -> Metric:
        m = evaluate(name, value, unit, threshold, op, node, nodeid=self.item.nodeid)
        self.item.stash.setdefault(METRICS, []).append(m)
        attach_to_allure(m)
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

    def _place(self, nodeid: str):
        placements = getattr(self.state, "placements", None) or {}
        return placements.get(nodeid)

    def record_metric(self, name, value, unit="", threshold=None, op=">=", node=None) -> Metric:
        """A metric of the run itself (no test): in metrics.json and the sign-off, and it
        fails the sign-off when it misses its threshold. Record on the controller."""
        m = evaluate(name, value, unit, threshold, op, node)
        self.run_metrics.append(m)
        return m

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture
    def metric(self, request: pytest.FixtureRequest):
        """``metric(name, value, unit, threshold=None, op=">=", node=None) -> Metric``:
        record a measured number for this test and get its verdict (``.passed``,
        ``.message``). ``op`` ``>=`` makes ``threshold`` a minimum, ``<=`` a maximum.
        A metric that misses its threshold fails the test."""
        return MetricRecorder(request.node)

    # ------------------------------------------------------------------ per test
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        # before every other setup hook: tests skipped at setup (blocked, requires) get labels too
        place = self._place(item.nodeid)
        if place is not None and self.active:
            if self._node_names is None:
                self._node_names = frozenset(n.name for n in self.state.model.resolved_nodes())
            labels.apply(item, place.layer, place.area, self.state.model, self._node_names)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        __tracebackhide__ = True
        result = yield  # re-raises what the test raised
        missed = [m for m in item.stash.get(METRICS, []) if not m.passed]
        if missed:  # the test recorded a metric that missed its threshold but did not assert it
            pytest.fail(f"{MISSED}: " + "; ".join(m.message for m in missed), pytrace=False)
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
        metrics = item.stash.get(METRICS, [])
        sent = item.stash.get(_SENT, 0)
        if len(metrics) > sent:  # each metric travels once, with the phase that recorded it
            report.hpc_metrics = [m.to_dict() for m in metrics[sent:]]
            item.stash[_SENT] = len(metrics)
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.outcomes.add(report)

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
        facts = fingerprint(self.state)
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
        self._write_allure_files(facts)

    def _write_allure_files(self, facts: dict | None = None) -> None:
        results = self.allure_dir()
        if results is None:
            return
        allure_files.write_environment(results, facts if facts is not None else fingerprint(self.state))
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
        if not s.passed:
            why = [f"{a.area} {a.verdict}" for a in s.areas if a.required and a.verdict != "PASS"]
            why += [m.message for m in s.run_metrics if not m.passed]
            terminalreporter.write_line(f"hpcvalidate: not signed off ({', '.join(why)}): exit code {s.exit_code}")
