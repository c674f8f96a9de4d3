"""Test helpers: read a generated Allure report the way a reviewer sees it, in a real
headless Chromium (Debian ``chromium``), and find entries in its single ``index.html``.

The single-file report embeds each data file as ``d('data/…json','<base64>')``; the tests
read those only to find the URL of one test result (``#testresult/<uid>``), then assert on
the DOM Chromium rendered from that URL.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pytest_hpcvalidate.report import allure_html

#: headless as root on a closed network (see shared/reporting-notes.md)
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-extensions", "--mute-audio", "--blink-settings=imagesEnabled=false",
    "--disable-features=site-per-process", "--renderer-process-limit=1", "--virtual-time-budget=3000",
]


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def missing() -> str | None:
    """Why the HTML report cannot be generated and viewed here, or None."""
    reason = allure_html.missing_tools()
    if reason:
        return reason
    if chromium() is None:
        return "no headless browser: apt-get install -y chromium (or run `bash setup.sh`)"
    return None


_EMBEDDED = re.compile(r"d\('([^']+)','([A-Za-z0-9+/=]*)'\)")


def embedded(index: Path) -> dict[str, object]:
    """The JSON data files embedded in a single-file report, by their path."""
    out = {}
    for path, data in _EMBEDDED.findall(index.read_text()):
        if path.endswith(".json"):
            out[path] = json.loads(base64.b64decode(data))
    return out


def result_uid(index: Path, name: str) -> str:
    """The report's uid of the test result called ``name``."""
    for path, doc in embedded(index).items():
        if path.startswith("data/test-cases/") and isinstance(doc, dict) and doc.get("name") == name:
            return doc["uid"]
    raise KeyError(f"no test result named {name!r} in {index}")


def step_attachments(index: Path, uid: str) -> list[tuple[str, dict]]:
    """(step title, attachment) for every attachment in the steps of test result ``uid``;
    ``#testresult/<uid>?attachment=<attachment uid>`` opens one with its content."""
    doc = embedded(index)[f"data/test-cases/{uid}.json"]

    def walk(steps):
        for step in steps:
            yield from ((step["name"], a) for a in step.get("attachments", []))
            yield from walk(step.get("steps", []))

    return list(walk(doc.get("testStage", {}).get("steps", [])))


def visible_text(dom: str) -> str:
    """The text of a rendered DOM: no scripts or styles, tags removed, whitespace collapsed."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom))).strip()


def _dump(url: str, timeout_s: float) -> str:
    with tempfile.TemporaryDirectory(prefix="hpcv-chromium-") as profile:
        proc = subprocess.run([chromium() or "chromium", *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                              capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom {url} failed (exit {proc.returncode}): {proc.stderr[-600:]}")
    return proc.stdout


def render(index: Path, *routes: str, timeout_s: float = 60.0) -> list[str]:
    """The visible text of ``index.html#<route>`` for each route (in parallel browsers)."""
    urls = [index.resolve().as_uri() + (f"#{r}" if r else "") for r in routes]
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        return [visible_text(dom) for dom in pool.map(lambda u: _dump(u, timeout_s), urls)]
