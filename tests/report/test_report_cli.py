"""``python -m pytest_hpcvalidate report DIR``: what it says when it cannot build the HTML
(the report it builds is read in a browser in test_report_e2e.py)."""

from __future__ import annotations

from pytest_hpcvalidate.__main__ import main
from pytest_hpcvalidate.report import allure_html


def test_a_dir_without_results_is_one_line_naming_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(allure_html, "missing_tools", lambda: None)  # whether installed or not: results come first
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"hpcvalidate report: no Allure results in {tmp_path / 'allure-results'}: run pytest with "
                   "--hpc-config first (it writes them to <--hpc-report-dir>/allure-results)\n")


def test_without_allures_generator_it_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(allure_html, "find_allure", lambda: None)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == ("hpcvalidate report: Allure's generator is not installed: run `bash setup.sh` (it installs "
                   "allure-commandline into .tools/) or set HPCV_ALLURE to an `allure` executable\n")


def test_without_java_it_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(allure_html, "find_allure", lambda: "/bin/true")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert main(["report", str(tmp_path)]) == 2
    assert "needs Java: apt-get install -y default-jre-headless" in capsys.readouterr().err
