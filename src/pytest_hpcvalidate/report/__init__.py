"""Reporting: Allure labels and steps, metrics and baselines, Allure run files, the sign-off.

- ``plugin.ReportPlugin``: the pytest plugin object (hooks and the ``metric`` fixture)
- ``labels``: epic/feature/story/severity/tags and the cluster parameter (stable historyId)
- ``evidence``: the commands a check runs (``Node.run``) and its metrics as Allure steps
- ``metrics``: ``Metric``, ``evaluate``, ``metrics.json``
- ``baseline``: ``--hpc-baseline``: a metric worse than an earlier run's beyond the tolerance fails
- ``cluster_facts`` / ``fingerprint``: what the nodes run and the run's fingerprint
- ``allure_files``: ``environment.properties``, ``categories.json``, the sign-off's own result
- ``signoff`` / ``signoff_html``: per-area verdicts, ``signoff.json``/``.md``/``.html``, the terminal table
- ``allure_html``: Allure's generator for the HTML report (``python -m pytest_hpcvalidate report``)
- ``redact`` / ``attach``: secrets masked before anything is attached
"""
