"""The cluster model and its loading: YAML (ours or the seed's) → :class:`ClusterConfig`."""

from .areas import AREA_LAYER, AREAS, LAYER_TITLES
from .errors import ConfigError, Problem
from .loader import load_config, load_text
from .model import ClusterConfig, ResolvedNode, Thresholds

__all__ = [
    "AREAS",
    "AREA_LAYER",
    "LAYER_TITLES",
    "ClusterConfig",
    "ConfigError",
    "Problem",
    "ResolvedNode",
    "Thresholds",
    "load_config",
    "load_text",
]
