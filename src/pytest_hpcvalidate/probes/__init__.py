"""Probes: run a command on a node, parse what it printed into a typed fact.

Shell strings live here, not in suites. Each parser is a pure function tested against
recorded real outputs in ``fixtures/``.
"""
