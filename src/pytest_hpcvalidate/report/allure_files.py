"""The run-level files Allure reads from its results directory: ``environment.properties``
(the cluster fingerprint, shown as "Environment"), ``categories.json`` (how failures are
grouped under "Categories"), and one extra result, "Sign-off: cluster …", that carries the
sign-off table, so the verdict per area is in the same HTML report as the checks.

Allure 2 matches a category when the result's status is in ``matchedStatuses`` and its
status message matches ``messageRegex`` as a whole (Java ``matches()``, DOTALL); a result
lands in every category it matches. The product-defect pattern therefore excludes the
infrastructure words, so the two groups do not overlap.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from pathlib import Path
from typing import Mapping

_INFRA_WORDS = (
    r"provisioning|ProvisioningError|cannot attach to|TransportError|SSHException|NoValidConnectionsError"
    r"|ssh: |timed out|TimeoutExpired"
)
#: how the sign-off result's message starts (its own category, never a product defect)
SIGNOFF_MESSAGE = "hpcvalidate sign-off: "

CATEGORIES: list[dict] = [
    {
        "name": "Not signed off",
        "description": "the acceptance sign-off: a required area is not PASS (see the sign-off entry)",
        "matchedStatuses": ["failed"],
        "messageRegex": SIGNOFF_MESSAGE + ".*",
    },
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
        "messageRegex": rf"(?!.*({_INFRA_WORDS})).*(AssertionError|CommandFailed|MetricFailure|metric missed its threshold|metric regressed).*",
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


_SIGNOFF_STATUS = {"PASS": "passed", "FAIL": "failed", "BLOCKED": "skipped", "NOT-RUN": "skipped"}


def write_signoff_result(results_dir: Path, signoff, description_html: str, markdown: str) -> Path:
    """An Allure result for the sign-off itself: passed when the run signs off, else failed
    with the areas that are not PASS; one step per area; the sign-off tables as its
    description; ``signoff.md`` and ``signoff.json`` attached. Its historyId is fixed per
    cluster, so Allure's history shows the sign-off's trend like any check's."""
    results_dir.mkdir(parents=True, exist_ok=True)
    now = int(time.time() * 1000)
    result_uuid = str(uuid.uuid4())
    attachments = []
    for name, body, mime, ext in (
        ("signoff.md", markdown, "text/markdown", "md"),
        ("signoff.json", json.dumps(signoff.to_dict(), indent=2, default=str), "application/json", "json"),
    ):
        source = f"{uuid.uuid4()}-attachment.{ext}"
        (results_dir / source).write_text(body)
        attachments.append({"name": name, "source": source, "type": mime})
    not_pass = [f"{a.area} {a.verdict}" for a in signoff.areas if a.required and a.verdict != "PASS"]
    not_pass += [m.message for m in signoff.run_metrics if not m.passed]
    message = f"{SIGNOFF_MESSAGE}{signoff.verdict}" + (f" ({', '.join(not_pass)})" if not_pass else "")
    steps = [
        {
            "name": f"{a.area}: {a.verdict}{'' if a.required else ' (not required)'}: {a.evidence()}",
            "status": _SIGNOFF_STATUS[a.verdict],
            "stage": "finished",
            "start": now,
            "stop": now,
        }
        for a in signoff.areas
    ]
    history = hashlib.md5(f"hpcvalidate-signoff:{signoff.cluster}".encode()).hexdigest()
    doc = {
        "uuid": result_uuid,
        "historyId": history,
        "testCaseId": history,
        "name": f"Sign-off: cluster {signoff.cluster}",
        "fullName": "hpcvalidate.signoff",
        "status": "passed" if signoff.passed else "failed",
        "statusDetails": {"message": message},
        "stage": "finished",
        "descriptionHtml": description_html,
        "steps": steps,
        "attachments": attachments,
        "parameters": [{"name": "cluster", "value": signoff.cluster}],
        "labels": [
            {"name": "suite", "value": "sign-off"},
            {"name": "epic", "value": "Sign-off"},
            {"name": "feature", "value": "sign-off"},
            {"name": "story", "value": "acceptance sign-off"},
            {"name": "severity", "value": "blocker"},
        ],
        "start": now,
        "stop": now,
    }
    path = results_dir / f"{result_uuid}-result.json"
    path.write_text(json.dumps(doc, indent=2))
    return path
