"""Allure labels for a placed test, derived from where it sits, not written by hand.

epic = the layer's title, feature = the area, story = the check (test function name),
severity = critical for a required area else normal, tags = provider and the nodes the
test's parametrization names. The cluster name goes in as an Allure parameter, so Allure's
historyId (fullName + parameters) is stable across runs of the same check on the same
cluster and differs between clusters.
"""

from __future__ import annotations

import re
from typing import Iterable

import pytest
from allure_commons.types import LabelType, Severity

from ..config.areas import LAYER_TITLES

#: allure-pytest's marker for labels given with ``@allure.epic(...)`` etc.
_ALLURE_LABEL_MARK = "allure_label"
CLUSTER_PARAMETER = "cluster"


def story(item: pytest.Item) -> str:
    """The test function's name without its parametrization."""
    return getattr(item, "originalname", None) or item.name.split("[", 1)[0]


def nodes_in(item: pytest.Item, node_names: Iterable[str]) -> list[str]:
    """Node names the test is parametrized over: parameter values that are node names, and
    node names appearing as whole words in the parametrization id (``c1-c2``, ``ctl->c1``)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return []
    names = set(node_names)
    found = {v for v in callspec.params.values() if isinstance(v, str) and v in names}
    param_id = callspec.id
    taken = [False] * len(param_id)
    for name in sorted((n for n in names if n in param_id), key=len, reverse=True):  # gpu-1 before gpu
        for m in re.finditer(rf"(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])", param_id):
            if not any(taken[m.start():m.end()]):
                taken[m.start():m.end()] = [True] * (m.end() - m.start())
                found.add(name)
    return sorted(found)


def labels_for(
    item: pytest.Item, layer: int, area: str | None, model, node_names: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """(label type, value) pairs for a placed test; labels the test sets with its own
    ``@allure.*`` markers win over ours. ``node_names``: the model's (computed once per run
    by the caller on large clusters)."""
    own = {mark.kwargs.get("label_type") for mark in item.iter_markers(_ALLURE_LABEL_MARK)}
    severity = Severity.CRITICAL if area is not None and area in model.required_areas() else Severity.NORMAL
    pairs: list[tuple[str, str]] = [
        (LabelType.EPIC, LAYER_TITLES.get(layer, f"L{layer}")),
        (LabelType.STORY, story(item)),
        (LabelType.SEVERITY, severity.value),
    ]
    if area is not None:
        pairs.insert(1, (LabelType.FEATURE, area))
    pairs = [(kind, value) for kind, value in pairs if kind not in own]
    pairs.append((LabelType.TAG, model.provider))
    if node_names is None:
        node_names = [n.name for n in model.resolved_nodes()]
    pairs += [(LabelType.TAG, name) for name in nodes_in(item, node_names)]
    return pairs


def apply(item: pytest.Item, layer: int, area: str | None, model, node_names: Iterable[str] | None = None) -> None:
    """Put the labels and the cluster parameter on the Allure result of the running test.

    Called from the setup phase, so tests skipped at setup (blocked layers, missing
    capabilities) carry them too. A no-op without an Allure listener."""
    import allure

    for kind, value in labels_for(item, layer, area, model, node_names):
        allure.dynamic.label(kind, value)
    allure.dynamic.parameter(CLUSTER_PARAMETER, model.name)
