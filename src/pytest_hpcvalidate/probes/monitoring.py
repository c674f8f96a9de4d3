"""Prometheus and the node exporter, read over HTTP from a node of the cluster.

Every request is ``curl`` on a node (the Prometheus node, as the checks run it): the path
Prometheus itself takes to an exporter, and the only one an operator's workstation may lack.
Nothing here changes anything: GETs of ``/metrics``, ``/-/ready``, ``/api/v1/targets`` and
``/api/v1/query``. Parsing is separate from fetching, so recorded real outputs
(``fixtures/monitoring/``) test the same code offline.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

from ..cluster import Node

#: curl's exit status when it cannot connect / times out (for the messages)
_CURL_WHY = {6: "name does not resolve", 7: "connection refused or no route", 28: "timed out",
             52: "empty reply", 56: "connection reset"}


class MonitoringError(Exception):
    """A reply that is not what Prometheus or the node exporter sends (the message says what)."""


@dataclass(frozen=True)
class HttpReply:
    url: str
    status: int       # HTTP status; 0 when no reply came
    body: str
    error: str        # why no reply came (curl's words), else ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def describe(self) -> str:
        if self.status == 0:
            return f"GET {self.url}: no reply ({self.error})"
        return f"GET {self.url}: HTTP {self.status} {self.body.strip()[:200]!r}"


def http_get(node: Node, url: str, timeout: float = 10.0) -> HttpReply:
    """GET ``url`` with curl on ``node``."""
    r = node.run(f"curl -sS -m {timeout:g} -w '\\n%{{http_code}}' {shlex.quote(url)}", timeout=timeout + 10)
    if r.exit_code == 127:
        raise MonitoringError(f"curl is not installed on {node.name}: install it there (the monitoring checks "
                              f"send their HTTP requests from {node.name})")
    body, _, code = r.stdout.rpartition("\n")
    status = int(code) if code.strip().isdigit() else 0
    error = ""
    if not r.ok:
        why = _CURL_WHY.get(r.exit_code, f"curl exit {r.exit_code}")
        error = f"{why}: {r.stderr.strip()[-300:]}" if r.stderr.strip() else why
    return HttpReply(url, status, body, error)


# -- the node exporter ---------------------------------------------------------------------------

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse_metrics(text: str) -> Samples:
    """The Prometheus text exposition format → {sample name: [(labels, value), ...]}
    (prometheus_client's own parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    except (ValueError, TypeError, IndexError) as exc:
        raise MonitoringError(f"not the Prometheus text format ({exc}): {text.strip()[:120]!r}") from None
    return out


def exporter_problems(samples: Samples, required: list[str], collectors: list[str] = ()) -> list[str]:
    """What is wrong with one node exporter's metrics: required metrics without a sample,
    required collectors not enabled or not successful, a textfile the collector could not read
    (site scripts' metrics: GPU health, node health checks), a memory total of zero."""
    problems = []
    missing = [m for m in required if not samples.get(m)]
    if missing:
        problems.append(f"no sample of {', '.join(missing)} (a collector disabled or failing?)")
    success = {labels.get("collector", "?"): v for labels, v in samples.get("node_scrape_collector_success", [])}
    absent = [c for c in collectors if c not in success]
    if absent:
        problems.append(f"collector(s) {', '.join(absent)} not enabled (started with --no-collector.<name>?)")
    failed = [c for c in collectors if success.get(c, 1) != 1]
    if failed:
        problems.append(f"collector(s) {', '.join(failed)} failed (node_scrape_collector_success 0: the "
                        f"exporter's log says why)")
    if any(v != 0 for _, v in samples.get("node_textfile_scrape_error", [])):
        problems.append("the textfile collector could not read a .prom file in its directory "
                        "(node_textfile_scrape_error 1): the metrics a site script writes there are missing; "
                        "the exporter's log names the file")
    mem = [v for _, v in samples.get("node_memory_MemTotal_bytes", [])]
    if mem and not any(v > 0 for v in mem):
        problems.append("node_memory_MemTotal_bytes is 0")
    return problems


# -- Prometheus ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScrapeTarget:
    address: str          # host:port Prometheus scrapes
    instance: str         # the instance label
    job: str
    health: str           # up | down | unknown
    last_error: str
    last_scrape: float | None   # epoch seconds; None: never scraped

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int | None:
        tail = self.address.rsplit(":", 1)[-1]
        return int(tail) if ":" in self.address and tail.isdigit() else None


def _api_data(text: str, what: str):
    try:
        doc = json.loads(text)
    except ValueError:
        raise MonitoringError(f"{what}: not JSON: {text.strip()[:120]!r}") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        err = doc.get("error") if isinstance(doc, dict) else None
        raise MonitoringError(f"{what}: {err or 'status is not success'}: {text.strip()[:200]!r}")
    return doc.get("data")


def parse_time(stamp: str) -> float | None:
    """Prometheus's RFC 3339 time (nanoseconds) → epoch seconds; its zero time → None."""
    if not stamp or stamp.startswith("0001-01-01"):
        return None
    head, dot, frac = stamp.rstrip("Z").partition(".")
    tz = ""
    for sign in ("+", "-"):
        if sign in frac:
            frac, _, rest = frac.partition(sign)
            tz = sign + rest
    text = head + (("." + frac[:6]) if dot else "") + (tz or "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MonitoringError(f"not a Prometheus time: {stamp!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_targets(text: str) -> list[ScrapeTarget]:
    """``/api/v1/targets?state=active`` → its active targets."""
    data = _api_data(text, "Prometheus targets")
    out = []
    for t in (data or {}).get("activeTargets") or []:
        labels = t.get("labels") or {}
        discovered = t.get("discoveredLabels") or {}
        address = discovered.get("__address__") or urlsplit(t.get("scrapeUrl", "")).netloc
        out.append(ScrapeTarget(address=address, instance=labels.get("instance", address),
                                job=labels.get("job", t.get("scrapePool", "")), health=t.get("health", "unknown"),
                                last_error=t.get("lastError", ""), last_scrape=parse_time(t.get("lastScrape", ""))))
    return out


def targets_of_node(targets: list[ScrapeTarget], name: str, address: str, port: int,
                    job: str | None = None) -> list[ScrapeTarget]:
    """The targets that scrape ``name``'s exporter on ``port``: by node name, a name with a
    domain (``name.cluster.example``) or its address, in ``job`` when one is given."""
    def is_node(host: str) -> bool:
        return host in (name, address) or host.startswith(name + ".")

    return [t for t in targets if is_node(t.host) and t.port == port and (job is None or t.job == job)]


def parse_query(text: str) -> list[tuple[dict[str, str], float, float]]:
    """``/api/v1/query`` → [(labels, value, timestamp)] of an instant vector (a scalar gives one
    row with no labels)."""
    data = _api_data(text, "Prometheus query")
    kind, result = (data or {}).get("resultType"), (data or {}).get("result")
    try:
        if kind == "scalar":
            return [({}, float(result[1]), float(result[0]))]
        if kind == "vector":
            return [(r.get("metric") or {}, float(r["value"][1]), float(r["value"][0])) for r in result]
    except (TypeError, KeyError, IndexError, ValueError):
        pass
    raise MonitoringError(f"Prometheus query: not an instant vector or scalar: {text.strip()[:200]!r}")


_DURATION_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


def parse_duration(text: str) -> float:
    """A Prometheus duration (``15d``, ``1y``, ``2h30m``, ``500ms``; ``0s`` for none) in seconds."""
    parts = re.findall(r"(\d+)(ms|[ywdhms])", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise MonitoringError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _DURATION_UNITS[u] for n, u in parts)


def parse_flags(text: str) -> dict[str, str]:
    """``/api/v1/status/flags`` → {flag: value} (the command line Prometheus runs with)."""
    data = _api_data(text, "Prometheus flags")
    return {str(k): str(v) for k, v in (data or {}).items()}


#: Prometheus 2's retention when neither a time nor a size is given
DEFAULT_RETENTION_S = 15 * 86400


def retention_s(flags: dict[str, str]) -> float | None:
    """How long Prometheus keeps samples, s, from its flags (``retention.time``, the older
    ``retention``, else 15 days unless only a size limit is set); None: no time limit."""
    for key in ("storage.tsdb.retention.time", "storage.tsdb.retention"):
        value = parse_duration(flags.get(key) or "0s")
        if value > 0:
            return value
    size = (flags.get("storage.tsdb.retention.size") or "0B").strip()
    return DEFAULT_RETENTION_S if size in ("0", "0B", "") else None


class Prometheus:
    """The Prometheus API at ``url``, asked from ``node`` (curl there)."""

    def __init__(self, node: Node, url: str, timeout: float = 10.0):
        self.node, self.url, self.timeout = node, url.rstrip("/"), timeout

    def get(self, path: str) -> HttpReply:
        return http_get(self.node, self.url + path, self.timeout)

    def _ok(self, path: str, what: str) -> str:
        return _get_ok(self.node, self.url + path, what, self.timeout)

    def ready(self) -> HttpReply:
        return self.get("/-/ready")

    def targets(self) -> list[ScrapeTarget]:
        return parse_targets(self._ok("/api/v1/targets?state=active", "Prometheus targets"))

    def query(self, promql: str) -> list[tuple[dict[str, str], float, float]]:
        return parse_query(self._ok("/api/v1/query?query=" + quote(promql, safe=""), f"query {promql!r}"))

    def flags(self) -> dict[str, str]:
        return parse_flags(self._ok("/api/v1/status/flags", "Prometheus flags"))

    def rules(self) -> list[Rule]:
        return parse_rules(self._ok("/api/v1/rules", "Prometheus rules"))

    def alertmanagers(self) -> list[str]:
        return parse_alertmanagers(self._ok("/api/v1/alertmanagers", "Prometheus alertmanagers"))

    def now(self) -> float:
        """Prometheus's own clock (``time()``), against which scrape ages are judged."""
        return self.query("time()")[0][1]


# -- rules and Alertmanager ------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    group: str
    name: str             # alert name or recorded series
    kind: str             # alerting | recording
    health: str           # ok | err | unknown
    last_error: str
    state: str            # alerting rules: firing | pending | inactive; recording rules: ""
    query: str = ""       # the rule's PromQL expression, as Prometheus prints it
    labels: tuple[tuple[str, str], ...] = ()  # the labels an alerting rule adds to its alerts

    def watches_up(self, job: str | None = None) -> bool:
        """An alerting rule over the ``up`` series (of ``job``, or of any job when its query
        names none): it fires when a target cannot be scraped, a node down among them."""
        if self.kind != "alerting" or not re.search(r"(?<![\w:])up(?![\w:])", self.query):
            return False
        jobs = re.findall(r'job\s*=\s*"((?:[^"\\]|\\.)*)"', self.query)
        return job is None or not jobs or job in jobs


def parse_rules(text: str) -> list[Rule]:
    """``/api/v1/rules`` → every rule of every loaded group."""
    data = _api_data(text, "Prometheus rules")
    out = []
    for group in (data or {}).get("groups") or []:
        for r in group.get("rules") or []:
            out.append(Rule(group.get("name", ""), r.get("name", ""), r.get("type", ""), r.get("health", "unknown"),
                            r.get("lastError", ""), r.get("state", ""), r.get("query", ""),
                            tuple(sorted((r.get("labels") or {}).items()))))
    return out


def parse_alertmanagers(text: str) -> list[str]:
    """``/api/v1/alertmanagers`` → the URLs of the Alertmanagers Prometheus sends to."""
    data = _api_data(text, "Prometheus alertmanagers")
    return [a.get("url", "") for a in (data or {}).get("activeAlertmanagers") or []]


def url_names(url: str, name: str, address: str, port: int) -> bool:
    """The URL's host is the node (name, name with a domain, or address) on ``port``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return (host in (name, address) or host.startswith(name + ".")) and parts.port == port


def resolve(node: Node, host: str) -> set[str]:
    """The IPv4 addresses ``host`` resolves to on ``node`` (``getent ahostsv4``; an address
    resolves to itself, an unknown name to nothing)."""
    if not host:
        return set()
    r = node.run(f"getent ahostsv4 {shlex.quote(host)}", timeout=15)
    return {line.split()[0] for line in r.stdout.splitlines() if line.strip()} if r.ok else set()


@dataclass(frozen=True)
class ReceivedAlert:
    name: str
    state: str            # active | suppressed | unprocessed
    silenced_by: tuple[str, ...]
    inhibited_by: tuple[str, ...]
    labels: dict
    receivers: tuple[str, ...] = ()  # where Alertmanager routes it


def parse_received_alerts(text: str) -> list[ReceivedAlert]:
    """Alertmanager's ``/api/v2/alerts`` (a JSON list) → the alerts it holds."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise MonitoringError(f"Alertmanager alerts: not JSON: {text.strip()[:120]!r}") from None
    if not isinstance(doc, list):
        raise MonitoringError(f"Alertmanager alerts: not a list of alerts: {text.strip()[:200]!r}")
    out = []
    for a in doc:
        labels, status = a.get("labels") or {}, a.get("status") or {}
        out.append(ReceivedAlert(labels.get("alertname", ""), status.get("state", ""),
                                 tuple(status.get("silencedBy") or ()), tuple(status.get("inhibitedBy") or ()), labels,
                                 tuple(r.get("name", "") for r in a.get("receivers") or ())))
    return out


def running_config(text: str) -> str:
    """Alertmanager's ``/api/v2/status`` → the configuration it runs (YAML text)."""
    try:
        return json.loads(text)["config"]["original"]
    except (ValueError, KeyError, TypeError) as exc:
        raise MonitoringError(f"Alertmanager status: no configuration in it ({exc}): {text.strip()[:160]!r}") from None


def parse_receivers(text: str) -> dict[str, tuple[str, ...]]:
    """Alertmanager's ``/api/v2/status`` → {receiver: its integrations} (``email``, ``webhook``,
    ``pagerduty`` ..., from the ``*_configs`` lists of the configuration it runs; a receiver
    with none discards what is routed to it)."""
    import yaml

    try:
        config = yaml.safe_load(running_config(text)) or {}
    except yaml.YAMLError as exc:
        raise MonitoringError(f"Alertmanager status: its configuration is not YAML ({exc})") from None
    return {r.get("name", ""): tuple(sorted(k.removesuffix("_configs") for k, v in r.items()
                                            if k.endswith("_configs") and v))
            for r in config.get("receivers") or []}


def routes_test_script(config: str, labels: dict[str, str]) -> str:
    """Shell that asks ``amtool config routes test`` which receivers ``config`` (Alertmanager's
    running configuration) routes an alert with ``labels`` to: their names, comma-separated.
    The configuration goes in on stdin (no file is written on the node)."""
    args = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(labels.items()))
    return (f"amtool config routes test --config.file=/dev/stdin {args} 2>/dev/null <<'HPCV_AM_CONFIG'\n"
            f"{config.rstrip()}\nHPCV_AM_CONFIG\n")


def _get_ok(node: Node, url: str, what: str, timeout: float) -> str:
    reply = http_get(node, url, timeout)
    if not reply.ok:
        raise MonitoringError(f"{what}: {reply.describe()} (asked from {node.name})")
    return reply.body


class Alertmanager:
    """The Alertmanager API at ``url``, asked from ``node``."""

    def __init__(self, node: Node, url: str, timeout: float = 10.0):
        self.node, self.url, self.timeout = node, url.rstrip("/"), timeout

    def ready(self) -> HttpReply:
        return http_get(self.node, self.url + "/-/ready", self.timeout)

    def alerts(self) -> list[ReceivedAlert]:
        return parse_received_alerts(_get_ok(self.node, self.url + "/api/v2/alerts", "Alertmanager alerts", self.timeout))

    def status(self) -> str:
        return _get_ok(self.node, self.url + "/api/v2/status", "Alertmanager status", self.timeout)

    def receivers(self) -> dict[str, tuple[str, ...]]:
        return parse_receivers(self.status())

    def routes(self, labels: dict[str, str]) -> tuple[str, ...]:
        """The receivers Alertmanager's running configuration routes an alert with ``labels``
        to, by ``amtool config routes test`` on the asking node (an alert need not fire)."""
        if not self.node.run("command -v amtool", timeout=10).ok:
            raise MonitoringError(f"amtool is not installed on {self.node.name} (package prometheus-alertmanager): "
                                  f"the routing of alerts that do not fire cannot be tested there")
        r = self.node.run(routes_test_script(running_config(self.status()), labels), timeout=20)
        if not r.ok:
            raise MonitoringError(f"amtool config routes test failed on {self.node.name}: {r.describe()}")
        return tuple(x.strip() for x in r.stdout.strip().split(",") if x.strip())
