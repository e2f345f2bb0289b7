"""The alert rules: valid for Prometheus, passing their promtool unit tests, a firing and a silent case for each
alert, a runbook section for each, and only metrics this project exports (or that the Zoho flow adds, as the
README's catalogue lists them)."""
from __future__ import annotations

import re
import subprocess

import yaml

from tests.ops.tools import ROOT, binary
from tests.test_architecture import readme_metric_catalogue

PROMETHEUS_DIR = ROOT / "ops" / "prometheus"
RULES = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"][0]["rules"]
RUNBOOK = (ROOT / "ops" / "RUNBOOK.md").read_text()


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary("promtool"), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rules_and_the_example_prometheus_config():
    for args in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml")):
        done = promtool(*args)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_pass_their_promtool_unit_tests():
    done = promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_silent_case():
    cases = [case for test in yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
             for case in test["alert_rule_test"]]
    for rule in RULES:
        own = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in own), f"{rule['alert']} never fires in alerts_test.yml"
        assert any(not case["exp_alerts"] for case in own), f"{rule['alert']} is never shown silent"


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section_naming_a_command():
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", RUNBOOK, re.M | re.S))
    for rule in RULES:
        severity = rule["labels"]["severity"]
        assert severity in ("critical", "warning") or severity.startswith("{{ if"), severity
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["runbook_url"] == f"ops/RUNBOOK.md#{rule['alert'].lower()}"
        assert "reconciler " in sections[rule["alert"]], f"the {rule['alert']} section names no command"


def test_the_readme_lists_every_alert():
    readme = (ROOT / "README.md").read_text()
    assert [rule["alert"] for rule in RULES if f"| `{rule['alert']}` |" not in readme] == []


def test_the_rules_query_only_metrics_in_the_catalogue():
    catalogue = readme_metric_catalogue()
    used = {re.sub(r"_(bucket|count|sum)$", "", name)
            for rule in RULES for name in re.findall(r"reconciler_\w+", rule["expr"])}
    assert used - set(catalogue) == set()
