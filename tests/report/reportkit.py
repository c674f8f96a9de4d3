"""Helpers for the report tests that drive dummy layered suites through ``pytester``.

The dummy config names a cluster of 1 controller + 2 compute nodes but no test asks for the
``cluster`` fixture, so nothing is provisioned: the runs exercise the reporting only.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

CLUSTER = """\
name: {name}
network: {{subnet: 10.9.0.0/24, bridge: br-t}}
compute:
  - names: c[1-2]
"""
# required for sign-off by this config: nodes, network, slurm, cgroup, mpi


def write_suites(pytester, files: dict[str, str], name: str = "t") -> Path:
    pytester.mkpydir("suites")
    for rel, body in files.items():
        path = pytester.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(body))
    cfg = pytester.path / f"cluster-{name}.yaml"
    cfg.write_text(CLUSTER.format(name=name))
    return cfg


#: hypothesis' pytest plugin re-imports (and assertion-rewrites) all of hypothesis in every
#: in-process run, ~2 s each; these runs do not use it
NO_HYPOTHESIS = ("-p", "no:hypothesispytest")


def run(pytester, cfg: Path, out: str = "out", *args: str):
    """Run the dummy suites in-process; (result, report dir)."""
    result = pytester.runpytest(*NO_HYPOTHESIS, "--hpc-config", str(cfg), "--hpc-report-dir", str(pytester.path / out),
                                *args, "suites")
    return result, pytester.path / out


def results(out: Path, signoff: bool = False) -> dict[str, dict]:
    """Allure test results by test name (without the sign-off's own result unless asked)."""
    docs = [json.loads(p.read_text()) for p in (out / "allure-results").glob("*-result.json")]
    return {d["name"]: d for d in docs if signoff or d.get("fullName") != "hpcvalidate.signoff"}


def label_map(doc: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for label in doc["labels"]:
        out.setdefault(label["name"], []).append(label["value"])
    return out


def signoff(out: Path) -> dict:
    return json.loads((out / "signoff.json").read_text())
