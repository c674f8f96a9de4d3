"""Reporting: Allure labels, metrics, Allure run files, the acceptance sign-off.

- ``plugin.ReportPlugin``: the pytest plugin object (hooks and the ``metric`` fixture)
- ``labels``: epic/feature/story/severity/tags and the cluster parameter (stable historyId)
- ``metrics``: ``Metric``, ``evaluate``, Allure steps for metrics, ``metrics.json``
- ``allure_files``: ``environment.properties`` and ``categories.json``
- ``fingerprint``: the cluster fingerprint shown in Allure and the sign-off
- ``signoff``: per-area verdicts, ``signoff.json``/``signoff.md``, the terminal table
- ``redact`` / ``attach``: secrets masked before anything is attached
"""
