"""``python -m pytest_hpcvalidate {schema,validate,destroy,cleanup,report}``: the plugin's helpers outside pytest."""

from __future__ import annotations

import argparse
import json
import sys


def _schema(args) -> int:
    from .config.model import ClusterConfig

    print(json.dumps(ClusterConfig.model_json_schema(), indent=2))
    return 0


def _validate(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .config import ConfigError, load_config

    status = 0
    for path in args.files:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            for line in exc.lines():
                print(line, file=sys.stderr)
            status = 4
            continue
        print(f"{path}: cluster {cfg.name!r} ({cfg.provider}) is valid")  # a line, not a title rich wraps to the table
        nodes = cfg.resolved_nodes()
        # the columns a config uses beyond the resources: Slurm features, required kernel modules
        extra = [(title, cell) for title, cell in (
            ("features", lambda n: ",".join(n.features) if n.features is not None else "-"),
            ("kernel modules", lambda n: ",".join(dict.fromkeys([*cfg.node_image.kernel_modules, *n.kernel_modules]))
             if n.role == "compute" else "-"),
        ) if any(cell(n) not in ("", "-") for n in nodes)]
        table = Table()
        for col in ("node", "role", "address", "cpus", "memory MiB", "gpus", *(title for title, _ in extra)):
            table.add_column(col)
        for n in nodes:
            sized = n.role != "login"  # a login node's resources are not asserted
            table.add_row(n.name, n.role, n.address, str(n.cpus) if sized else "-", str(n.memory_mb) if sized else "-",
                          f"{n.gpus} {n.gpu_type}".strip() if sized else "-",
                          *(cell(n) for _, cell in extra))
        Console().print(table)
        m = cfg.monitoring
        if m is not None:
            where = m.prometheus_url or f"{cfg.prometheus_node()}:{m.prometheus_port}"
            line = f"monitoring: Prometheus at {where} scrapes {len(cfg.monitored_nodes())} node exporters on :{m.node_exporter_port}"
            if m.alerting is not None:
                am = m.alerting.alertmanager_url or f"{cfg.alertmanager_node()}:{m.alerting.alertmanager_port}"
                line += f"; Alertmanager at {am}" + (f", watchdog {m.alerting.watchdog_alert}" if m.alerting.watchdog_alert else "")
            print(line)
        print(f"required for sign-off: {', '.join(cfg.required_areas())}")
    return status


def _cleanup(args) -> int:
    from .providers.local.cleanup import cleanup_stale

    problems = cleanup_stale(cluster=args.cluster)
    from .providers.libvirt.cleanup import STATE_ROOT as LIBVIRT_ROOT  # VMs of crashed libvirt runs

    if LIBVIRT_ROOT.is_dir() and any(LIBVIRT_ROOT.iterdir()):
        from .providers.libvirt.cleanup import cleanup_stale as cleanup_libvirt

        try:
            problems += cleanup_libvirt(cluster=args.cluster)
        except ImportError as exc:  # libvirt-python, or the libvirt.so.0 it loads, is not on this machine
            problems.append(f"cleanup: {LIBVIRT_ROOT} holds libvirt clusters' files, and libvirt cannot be used "
                            f"here to remove their VMs ({exc}); install libvirt-daemon-system and libvirt-python")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


def _kept_clusters() -> dict[str, list]:
    """{cluster name: [its provider's cleanup function, ...]} of the clusters recorded on this
    machine (kept by --hpc-keep, or left by a crash), local and libvirt."""
    from .providers.libvirt import cleanup as libvirt_cleanup
    from .providers.local import cleanup as local_cleanup
    from .providers.local.provider import STATE_ROOT as LOCAL_ROOT
    from .providers.local.state import state_files

    found: dict[str, list] = {}
    for module, root in ((local_cleanup, LOCAL_ROOT), (libvirt_cleanup, libvirt_cleanup.STATE_ROOT)):
        for path in state_files(root):
            found.setdefault(path.parent.name, []).append(module.cleanup_stale)
    return found


def _destroy(args) -> int:
    kept = _kept_clusters()
    if args.cluster not in kept:
        known = ", ".join(sorted(kept)) or "none"
        print(f"hpcvalidate destroy: no cluster named {args.cluster!r} is recorded on this machine "
              f"(recorded: {known}); `cleanup` sweeps what a crashed run left unrecorded", file=sys.stderr)
        return 1
    problems = [p for clean in kept[args.cluster] for p in clean(cluster=args.cluster)]
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"destroyed cluster {args.cluster!r}")
    return 1 if problems else 0


def _report(args) -> int:
    from pathlib import Path

    from .report.allure_html import ReportToolMissing, generate

    base = Path(args.report_dir)
    try:
        index = generate(base / "allure-results", Path(args.output) if args.output else base / "html",
                         single_file=not args.multi_file)
    except (ReportToolMissing, FileNotFoundError) as exc:
        print(f"hpcvalidate report: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"hpcvalidate report: {exc}", file=sys.stderr)
        return 1
    print(f"Allure report: {index}")
    if (base / "signoff.html").is_file():
        print(f"sign-off: {base / 'signoff.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_hpcvalidate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="print the JSON Schema of the cluster config").set_defaults(func=_schema)
    p = sub.add_parser("validate", help="validate config files and show the resolved nodes")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_validate)
    p = sub.add_parser("destroy", help="remove a cluster a --hpc-keep run left running (local or libvirt)")
    p.add_argument("cluster", help="the cluster's name (the config's name:)")
    p.set_defaults(func=_destroy)
    p = sub.add_parser("cleanup", help="remove what a crashed or --hpc-keep run of the local provider left")
    p.add_argument("--cluster", help="only this cluster (default: every recorded cluster)")
    p.set_defaults(func=_cleanup)
    p = sub.add_parser("report", help="build the Allure HTML report (one index.html) from a run's report dir")
    p.add_argument("report_dir", nargs="?", default="reports", help="the run's --hpc-report-dir (default: reports)")
    p.add_argument("-o", "--output", help="where the HTML goes (default: REPORT_DIR/html)")
    p.add_argument("--multi-file", action="store_true", help="Allure's multi-file report (needs a web server to view)")
    p.set_defaults(func=_report)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
