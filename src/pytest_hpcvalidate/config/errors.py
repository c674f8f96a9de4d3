"""Config problems as one line each: ``file:line: path.to[1].field: what is wrong (what is allowed)``."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from .types import PATTERN_WORDS

Loc = tuple[Any, ...]

#: control characters (a key can hold a newline) are shown escaped: one problem, one line
_ONE_LINE = {c: repr(chr(c))[1:-1] for c in range(32)}


@dataclass(frozen=True)
class Problem:
    path: str  # "clusters.hpc.compute_nodes[1].memory_gb"; "" for the whole file
    message: str
    line: int | None = None

    def render(self, source: str = "") -> str:
        where = source + (f":{self.line}" if self.line else "")
        head = ": ".join(p for p in (where, self.path) if p)
        text = f"{head}: {self.message}" if head else self.message
        return text.translate(_ONE_LINE)


class ConfigError(Exception):
    """One or more problems with a config file; ``str()`` is one line per problem."""

    def __init__(self, problems: Iterable[Problem], source: str = ""):
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.render(self.source) for p in self.problems]


def format_path(loc: Loc, prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("~"):
            continue  # a union tag, not a key
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that holds the key at the end of ``loc`` (to suggest known keys)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or (isinstance(part, str) and part.startswith("~")):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        current = _first_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _first_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(error: dict, root_model: type[BaseModel]) -> str:
    """Turn one pydantic error into words an operator acts on."""
    kind = error["type"]
    loc = error["loc"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        holder = _model_at(root_model, loc)
        allowed = sorted((f.alias or n) for n, f in holder.model_fields.items()) if holder else []
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        listing = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key '{key}'{hint}{listing}"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        words = PATTERN_WORDS.get(ctx.get("pattern", ""), f"a string matching {ctx.get('pattern')}")
        return f"{_short(value)} is not {words}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        limit = next(iter(ctx.values()), "?")
        return f"must be {op} {limit}, got {_short(value)}"
    if kind == "literal_error":
        return f"got {_short(value)}; allowed: {ctx.get('expected', '')}"
    if kind in ("too_short", "too_long"):
        return f"{error['msg'].rstrip('.')}, got {_short(value)}"
    if kind.startswith("ip_v4") or kind in ("ip_v4_network", "ip_v4_address"):
        what = "an IPv4 network like 10.77.0.0/24 (no host bits set)" if "network" in kind else "an IPv4 address"
        return f"{_short(value)} is not {what}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"])).removeprefix("Value error, ")
    if kind == "string_type" and isinstance(value, bool):
        return (f"a string is needed, and YAML read this one as {value}: YAML takes on/off, yes/no, true/false for a "
                "boolean; quote it, e.g. 'on'")
    if kind == "string_type" and value is None:
        return "a string is needed, and this one is empty (YAML reads an empty value, ~ and null as nothing; quote 'null')"
    msg = error["msg"].rstrip(".")
    return f"{msg}, got {_short(value)}" if value is not None and kind.endswith(("_type", "_parsing")) else msg


def problems_from_validation(
    exc: ValidationError, root_model: type[BaseModel], prefix: str = "", lines: dict | None = None
) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = format_path(loc, prefix)
        out.append(Problem(path, describe(err, root_model), line=(lines or {}).get(path_key(loc))))
    return out


def path_key(loc: Loc) -> tuple:
    """The key used to look up a YAML line for a location (union tags dropped)."""
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("~")))
