"""The run-level files Allure reads from its results directory: ``environment.properties``
(the cluster fingerprint, shown as "Environment") and ``categories.json`` (how failures are
grouped under "Categories").

Allure 2 matches a category when the result's status is in ``matchedStatuses`` and its
status message matches ``messageRegex`` as a whole (Java ``matches()``, DOTALL); a result
lands in every category it matches. The product-defect pattern therefore excludes the
infrastructure words, so the two groups do not overlap.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

_INFRA_WORDS = r"provisioning|ProvisioningError|TransportError|SSHException|NoValidConnectionsError|ssh: |timed out|TimeoutExpired"

CATEGORIES: list[dict] = [
    {
        "name": "Infrastructure errors",
        "description": "the run could not reach or build the cluster (provisioning, transport, SSH, timeouts)",
        "matchedStatuses": ["broken", "failed"],
        "messageRegex": rf".*({_INFRA_WORDS}).*",
    },
    {
        "name": "Product defects",
        "description": "a check's assertion failed: the cluster is not as the config says",
        "matchedStatuses": ["failed"],
        "messageRegex": rf"(?!.*({_INFRA_WORDS})).*(AssertionError|MetricFailure|metric missed its threshold).*",
    },
    {
        "name": "Blocked by a lower layer",
        "description": "skipped because a check in a lower layer failed",
        "matchedStatuses": ["skipped"],
        "messageRegex": ".*blocked by.*",
    },
    {
        "name": "Not applicable",
        "description": "skipped because the cluster lacks the capability the check needs",
        "matchedStatuses": ["skipped"],
        "messageRegex": ".*requires .*",
    },
]


def category_of(status: str, message: str | None) -> list[str]:
    """The categories Allure 2 puts a result in (its matching rule, for tests)."""
    out = []
    for c in CATEGORIES:
        if status not in c["matchedStatuses"]:
            continue
        if "messageRegex" in c and (message is None or not re.fullmatch(c["messageRegex"], message, re.DOTALL)):
            continue
        out.append(c["name"])
    return out


def write_categories(results_dir: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "categories.json"
    path.write_text(json.dumps(CATEGORIES, indent=2) + "\n")
    return path


def _escape(text: str, key: bool) -> str:
    """Java ``Properties`` escaping (the file is read as ISO-8859-1: others become \\uXXXX)."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif (key and ch in "=:#! ") or (ch == " " and i == 0):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) > 0x7E:
            units = ch.encode("utf-16-be")  # two units (a surrogate pair) beyond U+FFFF
            out.append("".join(f"\\u{int.from_bytes(units[j:j + 2], 'big'):04x}" for j in range(0, len(units), 2)))
        else:
            out.append(ch)
    return "".join(out)


def properties_text(props: Mapping[str, object]) -> str:
    return "".join(f"{_escape(str(k), True)}={_escape(str(v), False)}\n" for k, v in props.items())


def write_environment(results_dir: Path, props: Mapping[str, object]) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "environment.properties"
    path.write_text(properties_text(props), encoding="ascii")
    return path
