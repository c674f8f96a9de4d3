"""The HTML report a reviewer opens, made by Allure's own generator (``hpcvalidate report``).

Allure 2's command line (the npm package ``allure-commandline``, running on Java 17) turns
the results directory into one self-contained ``index.html`` (``--single-file``); that file
opens from disk in any browser, while the multi-file report does not load its data from
``file://`` (it needs a web server). ``setup.sh`` installs the generator into ``.tools/`` of
the checkout; ``$HPCV_ALLURE`` (a path to the ``allure`` script) or an ``allure`` on PATH is
used instead when present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

_IN_TOOLS = Path(".tools/node_modules/allure-commandline/dist/bin/allure")
#: the checkout this package runs from (editable install: src/pytest_hpcvalidate/report/ → root)
CHECKOUT = Path(__file__).resolve().parents[3]


class ReportToolMissing(RuntimeError):
    """Allure's generator or Java is not installed; the message says how to install them."""


def find_allure() -> str | None:
    for candidate in (os.environ.get("HPCV_ALLURE"), str(CHECKOUT / _IN_TOOLS), str(Path.cwd() / _IN_TOOLS),
                      shutil.which("allure")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing_tools() -> str | None:
    """Why the HTML report cannot be generated here, or None."""
    if find_allure() is None:
        return ("Allure's generator is not installed: run `bash setup.sh` (it installs allure-commandline "
                "into .tools/) or set HPCV_ALLURE to an `allure` executable")
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK)):
        return ("Allure's generator needs Java: apt-get install -y default-jre-headless (Java 17 on Debian 12, 21 on "
                "Debian 13; or run `bash setup.sh`)")
    return None


def generate(results: Path, out: Path, single_file: bool = True, timeout_s: float = 300.0) -> Path:
    """Generate the report from ``results`` into ``out`` (replaced); returns its index.html."""
    reason = missing_tools()
    if reason:
        raise ReportToolMissing(reason)
    results, out = Path(results), Path(out)
    if not results.is_dir() or not any(results.glob("*-result.json")):
        raise FileNotFoundError(f"no Allure results in {results}: run pytest with --hpc-config first "
                                "(it writes them to <--hpc-report-dir>/allure-results)")
    argv = [find_allure() or "allure", "generate", str(results), "-o", str(out), "--clean"]
    if single_file:
        argv.append("--single-file")
    # a short batch job: the C1 compiler and the serial collector halve its CPU time (unless the user chose)
    env = {**os.environ, "JAVA_OPTS": os.environ.get("JAVA_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL, env=env)
    index = out / "index.html"
    if proc.returncode != 0 or not index.is_file():
        tail = (proc.stderr.strip() or proc.stdout.strip())[-800:]
        raise RuntimeError(f"allure generate failed (exit {proc.returncode}): {tail}")
    return index
