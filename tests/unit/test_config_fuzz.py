"""Hypothesis throws broken configs at the loader: it must answer with ConfigError lines, never a traceback."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_hpcvalidate.config import ClusterConfig, ConfigError, load_text

ROOT = Path(__file__).resolve().parents[2]
BASES = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "configs").rglob("*.yaml"))]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True),
    st.text(max_size=20), st.sampled_from(["c[1-", "0000:zz", "10.0.0.0/33", "$HOME", "${X:-/y}", "ALL", "-1", "1e9"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


@st.composite
def broken_configs(draw):
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        all_paths = [p for p in paths(doc) if p]
        if not all_paths:
            break
        path = draw(st.sampled_from(all_paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["replace", "delete", "add_key", "rename"]))
        key = path[-1]
        if op == "replace":
            parent[key] = draw(values)
        elif op == "delete":
            del parent[key]
        elif op == "add_key" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
        elif op == "rename" and isinstance(parent, dict):
            parent[str(key) + draw(st.sampled_from(["s", "_", "x"]))] = parent.pop(key)
    return yaml.safe_dump(doc, sort_keys=False)


def assert_clean(text: str) -> None:
    try:
        cfg = load_text(text, "fuzz.yaml")
    except ConfigError as exc:
        lines = exc.lines()
        assert lines, "a ConfigError must say something"
        for line in lines:
            assert line.startswith("fuzz.yaml") and "\n" not in line and "Traceback" not in line
        return
    assert isinstance(cfg, ClusterConfig)
    cfg.resolved_nodes()
    cfg.required_areas()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_configs())
def test_mutated_configs_never_traceback(text):
    assert_clean(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}\n '\"&*!|>%@`,#0123456789")), max_size=120))
def test_yaml_garbage_never_tracebacks(text):
    assert_clean(text)
