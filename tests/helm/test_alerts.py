"""The chart's PrometheusRule: rendered only where the prometheus-operator API exists, its rule
groups pass ``promtool check rules``, and ``promtool test rules`` (tests/helm/alerts-test.yaml)
sees each alert fire on real series and stay silent where it should; every alert reads only
exported metrics, carries a severity, a summary, a description and a runbook link, and has its
entry in docs/operations.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.helm.conftest import CHART, exported_series, only, render
from tests.support.kube import REPO_ROOT, ControlPlane

PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
ALERTS_TEST = Path(__file__).with_name("alerts-test.yaml")
OPERATIONS = REPO_ROOT / "docs" / "operations.md"
ENABLED = "--set=metrics.prometheusRule.enabled=true"
# The values alerts-test.yaml was written for.
FLAGS = (ENABLED, "--set=metrics.prometheusRule.expectedAgents=3")
SEVERITIES = {"critical", "warning", "info"}


def _rule_groups(kube: ControlPlane, *flags: str) -> list[dict[str, Any]]:
    objects = render(kube, *FLAGS, *flags, f"--api-versions={PROMETHEUS_RULE_API}")
    groups: list[dict[str, Any]] = only(objects, "PrometheusRule")["spec"]["groups"]
    return groups


def _alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"]]


def _promtool(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_prometheus_rule_is_rendered_only_where_its_api_exists(kube: ControlPlane) -> None:
    assert [o for o in render(kube, ENABLED) if o["kind"] == "PrometheusRule"] == []
    notes = kube.helm("install", "backstop", str(CHART), ENABLED, "--dry-run=client").stdout
    assert "no PrometheusRule was created" in notes
    disabled = render(kube, f"--api-versions={PROMETHEUS_RULE_API}")
    assert [o for o in disabled if o["kind"] == "PrometheusRule"] == []
    rule = only(
        render(kube, ENABLED, "--set=metrics.prometheusRule.labels.release=kps",
               f"--api-versions={PROMETHEUS_RULE_API}"),
        "PrometheusRule",
    )  # fmt: skip
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["metadata"]["namespace"] == "backstop"


def test_rules_pass_promtool_check_and_unit_tests(
    kube: ControlPlane, promtool: Path, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": _rule_groups(kube)}))
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)

    checked = _promtool(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr
    tested = _promtool(promtool, "test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_every_alert_is_tested_firing_and_not_firing(kube: ControlPlane) -> None:
    names = {rule["alert"] for rule in _alerts(_rule_groups(kube))}
    cases = [
        case
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert firing == names
    assert silent == names


def test_alert_set_follows_the_values(kube: ControlPlane) -> None:
    names = {rule["alert"] for rule in _alerts(_rule_groups(kube))}
    assert {
        "BackstopAgentDown", "BackstopAgentDisconnected", "BackstopAgentGone",
        "BackstopAgentsMissing", "BackstopControllerDown", "BackstopTargetsUnreachable",
        "BackstopApprovalsPending",
        "BackstopReportsDropped", "BackstopUnattributedGpuMemory",
    } <= names  # fmt: skip
    # No expected agent count, no controller, no agent DaemonSet: their alerts go.
    fewer = {
        rule["alert"]
        for rule in _alerts(
            _rule_groups(
                kube,
                "--set=metrics.prometheusRule.expectedAgents=0",
                "--set=controller.enabled=false",
                "--set=controllerAddress=backstop.example:7443",
                "--set=agent.enrolment.enabled=false",
                "--set=agent.enabled=false",
            )
        )
    }
    assert names - fewer == {"BackstopAgentsMissing", "BackstopControllerDown", "BackstopAgentDown"}
    slow = _rule_groups(kube, "--set=metrics.prometheusRule.unattributedFor=30m")
    (unattributed,) = [r for r in _alerts(slow) if r["alert"] == "BackstopUnattributedGpuMemory"]
    assert unattributed["for"] == "30m"
    assert "for 30m" in unattributed["annotations"]["description"]


def test_every_alert_reads_exported_metrics_and_is_documented(kube: ControlPlane) -> None:
    series = exported_series()
    docs = OPERATIONS.read_text()
    alerts_section = docs[docs.index("\n## Alerts\n") :]
    for rule in _alerts(_rule_groups(kube)):
        name = rule["alert"]
        metrics = set(re.findall(r"\b(?:backstop_[a-z_]+|up)\b(?=[{\s)\[]|$)", rule["expr"]))
        assert metrics, name
        assert metrics - {"up"} <= series, (name, metrics - series)
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"], name
        assert annotations["description"], name
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}", name
        assert f"\n### {name}\n" in alerts_section, name
