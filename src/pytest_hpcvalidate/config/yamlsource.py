"""Reading a YAML file into plain data plus a map from each key path to its line.

Syntax errors and duplicate keys become :class:`Problem` lines with line and column.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from .errors import ConfigError, Problem

LineMap = dict[tuple, int]

_ENV = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def parse(text: str, source: str) -> tuple[Any, LineMap]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([Problem("", "the file is empty; see configs/minimal.yaml for a start")], source)
        lines: LineMap = {}
        dupes: list[Problem] = []
        _walk(node, (), lines, dupes)
        if dupes:
            raise ConfigError(dupes, source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise ConfigError([Problem("", f"invalid YAML: {where}{what}")], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("", f"invalid YAML: {exc}")], source) from None
    finally:
        loader.dispose()
    return data, lines


def _walk(node: yaml.Node, path: tuple, lines: LineMap, dupes: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                dupes.append(
                    Problem(_dotted(path + (key,)), f"duplicate key (first at line {seen[key]}); keep one", line)
                )
            seen[key] = line
            lines[path + (key,)] = line
            _walk(value_node, path + (key,), lines, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(item, path + (i,), lines, dupes)


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


def line_of(lines: LineMap, key: tuple) -> int | None:
    """The line of ``key`` or of its nearest ancestor that is in the file."""
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return None


def expand_env(data: Any, path: tuple = (), problems: list | None = None) -> Any:
    """``$VAR``, ``${VAR}`` and ``${VAR:-default}`` in string values, as the seed's ai-how does."""
    if isinstance(data, dict):
        return {k: expand_env(v, path + (k,), problems) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, path + (i,), problems) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def sub(m: re.Match) -> str:
        name = m.group("braced") or m.group("bare")
        if name in os.environ:
            return os.environ[name]
        if m.group("default") is not None:
            return m.group("default")
        if problems is not None:
            problems.append(
                (path, f"environment variable {name} is not set; export it or write ${{{name}:-default}}")
            )
        return m.group(0)

    return _ENV.sub(sub, data)


def read(path: str) -> tuple[str, str]:
    """(text, source label) of a config file, or a ConfigError saying why it can't be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read(), path
    except FileNotFoundError:
        raise ConfigError([Problem("", "file not found; pass an existing YAML file to --hpc-config")], path) from None
    except IsADirectoryError:
        raise ConfigError([Problem("", "is a directory; pass a YAML file to --hpc-config")], path) from None
    except (PermissionError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError([Problem("", f"cannot read: {exc.strerror if isinstance(exc, OSError) else exc}")], path) from None
