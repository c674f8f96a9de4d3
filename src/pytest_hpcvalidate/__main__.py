"""``python -m pytest_hpcvalidate {schema,validate,cleanup}``: the plugin's helpers outside pytest."""

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
        table = Table(title=f"{path}: cluster {cfg.name!r} ({cfg.provider}) is valid")
        for col in ("node", "role", "address", "cpus", "memory MiB", "gpus"):
            table.add_column(col)
        for n in cfg.resolved_nodes():
            table.add_row(n.name, n.role, n.address, str(n.cpus), str(n.memory_mb), f"{n.gpus} {n.gpu_type}".strip())
        Console().print(table)
        print(f"required for sign-off: {', '.join(cfg.required_areas())}")
    return status


def _cleanup(args) -> int:
    from .providers.local.cleanup import cleanup_stale

    problems = cleanup_stale(cluster=args.cluster)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_hpcvalidate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="print the JSON Schema of the cluster config").set_defaults(func=_schema)
    p = sub.add_parser("validate", help="validate config files and show the resolved nodes")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_validate)
    p = sub.add_parser("cleanup", help="remove what a crashed or --hpc-keep run of the local provider left")
    p.add_argument("--cluster", help="only this cluster (default: every recorded cluster)")
    p.set_defaults(func=_cleanup)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
