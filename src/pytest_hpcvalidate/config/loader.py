"""Load a config file (either format) into a validated :class:`ClusterConfig`.

Every way a file can be wrong ends in one :class:`ConfigError` listing every problem found,
one line each; nothing else escapes (a test throws hypothesis-generated garbage at it).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .checks import semantic_problems
from .errors import ConfigError, Problem, path_key, problems_from_validation
from .model import ClusterConfig
from .seed import SeedConfig, is_seed_format, to_cluster_config
from .yamlsource import expand_env, line_of, parse, read

SEED_PREFIX = {
    # our paths -> the seed's, for problems found after mapping
    "controller": "clusters.hpc.controller",
    "compute": "clusters.hpc.compute_nodes",
    "network": "clusters.hpc.network",
    "slurm": "clusters.hpc.slurm_config",
    "storage": "clusters.hpc.storage",
}


def load_config(path: str) -> ClusterConfig:
    text, source = read(path)
    return load_text(text, source)


def load_text(text: str, source: str = "<config>") -> ClusterConfig:
    try:
        return _load(text, source)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError([Problem("", "the document is nested too deeply")], source) from None


def _load(text: str, source: str) -> ClusterConfig:
    data, lines = parse(text, source)
    if not isinstance(data, dict):
        raise ConfigError(
            [Problem("", f"the top level must be a mapping of keys (name, network, compute, ...), got {type(data).__name__}")],
            source,
        )
    env_problems: list[tuple[tuple, str]] = []
    data = expand_env(data, (), env_problems)
    problems = [Problem(_dotted(p), msg, line_of(lines, p)) for p, msg in env_problems]

    def with_lines(exc: ValidationError, model, prefix: str = "") -> list[Problem]:
        found = problems_from_validation(exc, model, prefix)
        return [
            Problem(p.path, p.message, line_of(lines, path_key(tuple(e["loc"]))))
            for p, e in zip(found, exc.errors(include_url=False))
        ]

    other_networks: list = []
    if is_seed_format(data):
        try:
            seed = SeedConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(problems + with_lines(exc, SeedConfig), source) from None
        if problems:
            raise ConfigError(problems, source)
        try:
            cfg, other_networks = to_cluster_config(seed)
        except ValidationError as exc:
            raise ConfigError(
                [Problem(f"clusters.hpc ({p.path})", p.message) for p in problems_from_validation(exc, ClusterConfig)],
                source,
            ) from None
        semantic = [_seed_path(p, lines) for p in semantic_problems(cfg, other_networks)]
    else:
        try:
            cfg = ClusterConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(problems + with_lines(exc, ClusterConfig), source) from None
        if problems:
            raise ConfigError(problems, source)
        semantic = [Problem(p.path, p.message, _line_for_path(p.path, lines)) for p in semantic_problems(cfg)]
    if semantic:
        raise ConfigError(semantic, source)
    return cfg


def _dotted(path: tuple) -> str:
    from .errors import format_path

    return format_path(path)


def _line_for_path(path: str, lines: dict) -> int | None:
    import re

    parts: list[Any] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        parts.append(int(index) if index else name)
    return line_of(lines, tuple(parts))


def _seed_path(p: Problem, lines: dict) -> Problem:
    head, _, rest = p.path.partition(".")
    base = head.split("[")[0]
    if base in SEED_PREFIX:
        path = SEED_PREFIX[base] + head[len(base):] + (f".{rest}" if rest else "")
    else:
        path = p.path
    return Problem(path, p.message, _line_for_path(path, lines))
