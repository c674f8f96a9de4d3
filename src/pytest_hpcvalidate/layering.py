"""Which layer and area a test belongs to, and the gate that blocks higher layers.

A test's layer comes from ``@pytest.mark.layer(n)``, else from ``@pytest.mark.area(name)``,
else from its path (``suites/l3_cgroup/...`` → layer 3, area ``cgroup``). Tests without
any of these are ordinary tests: never reordered, never blocked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from .config.areas import AREA_LAYER, LAYER_TITLES

_PATH_LAYER = re.compile(r"(?:^|[/\\])l(\d)_([a-z0-9]+)(?:[/\\]|$)")


@dataclass(frozen=True)
class Placement:
    layer: int
    area: str | None


def placement(item: pytest.Item) -> Placement | None:
    layer_mark = item.get_closest_marker("layer")
    area_mark = item.get_closest_marker("area")
    area = area_mark.args[0] if area_mark and area_mark.args else None
    path_match = _PATH_LAYER.search(str(item.path))
    if area is None and path_match:
        area = path_match.group(2)
    if layer_mark and layer_mark.args:
        return Placement(int(layer_mark.args[0]), area)
    if area in AREA_LAYER:
        return Placement(AREA_LAYER[area], area)
    if path_match:
        return Placement(int(path_match.group(1)), area)
    return None


def short_id(nodeid: str) -> str:
    """``suites/l1_network/test_reach.py::test_x[a-b]`` → ``l1_network::test_x[a-b]``."""
    path, _, name = nodeid.partition("::")
    m = _PATH_LAYER.search(path)
    folder = f"l{m.group(1)}_{m.group(2)}" if m else path.rsplit("/", 1)[-1].removesuffix(".py")
    return f"{folder}::{name}" if name else folder


@dataclass
class LayerGate:
    """Remembers the first failing test of each layer; answers whether a layer is blocked."""

    first_failure: dict[int, str] = field(default_factory=dict)

    def record_failure(self, layer: int, nodeid: str) -> None:
        self.first_failure.setdefault(layer, nodeid)

    def blocker(self, layer: int) -> str | None:
        lower = sorted(lyr for lyr in self.first_failure if lyr < layer)
        return self.first_failure[lower[0]] if lower else None

    def reason(self, layer: int) -> str | None:
        nodeid = self.blocker(layer)
        if nodeid is None:
            return None
        lower = next(lyr for lyr in sorted(self.first_failure) if self.first_failure[lyr] == nodeid)
        return f"blocked by {short_id(nodeid)} ({LAYER_TITLES.get(lower, f'layer {lower}')} failed)"
