"""values.schema.json: it describes every value in values.yaml, the example value sets pass it,
and a value of the wrong type, out of range, outside its fixed set, or unknown stops
``helm template`` with helm's message naming that value."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.helm.conftest import CHART
from tests.support.kube import ControlPlane

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _unschemed(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Paths of ``value`` (a values.yaml subtree) that ``schema`` does not describe."""
    missing: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, child in value.items():
            if key in properties:
                missing += _unschemed(child, properties[key], f"{path}.{key}")
            elif not isinstance(schema.get("additionalProperties"), dict):
                missing.append(f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            missing += _unschemed(item, schema.get("items", {}), f"{path}[{index}]")
    if "type" not in schema and "enum" not in schema:
        missing.append(f"{path} (no type)")
    return missing


def test_schema_is_draft_7_and_describes_every_value() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert _unschemed(VALUES, SCHEMA, "") == []
    assert SCHEMA["additionalProperties"] is False


# id: (--set values, where helm says the error is, what it says there), by kind of mistake.
WRONG_TYPE = {
    "string-for-integer": (["controller.replicas=two"], "/controller/replicas", "want integer"),
    "string-for-boolean": (["agent.enabled=maybe"], "/agent/enabled", "want boolean"),
}
UNKNOWN_KEY = {
    "top-level": (["controler.replicas=2"], "", "properties 'controler' not allowed"),
    "nested": (["agent.lease.second=30"], "/agent/lease", "properties 'second' not allowed"),
}
OUT_OF_RANGE = {
    "port": (["controller.service.grpcPort=70000"], "/controller/service/grpcPort", "maximum"),
    "no-replicas": (["controller.replicas=0"], "/controller/replicas", "minimum: got 0, want 1"),
    "negative-lease": (["agent.lease.seconds=-5"], "/agent/lease/seconds", "minimum"),
}
NOT_IN_SET = {
    "log-level": (["logLevel=loud"], "/logLevel", "one of 'debug', 'info', 'warning', 'error'"),
    "store": (["store.type=mysql"], "/store/type", "one of 'sqlite', 'postgresql'"),
    "role": (["trustPolicy.policy.people[0].role=root"], "/people/0/role", "one of 'viewer'"),
    "cloud": (["cloudAgents[0].provider=azure"], "/cloudAgents/0/provider", "one of 'aws', 'gcp'"),
}
BAD_FORM = {
    "duration": (["metrics.prometheusRule.agentDownFor=5 min"], "/agentDownFor", "match pattern"),
    "relative-path": (["agent.cgroupPrefixes={kubepods}"], "/cgroupPrefixes/0", "match pattern"),
}
BAD_VALUES: dict[str, tuple[list[str], str, str]] = {
    f"{kind}-{name}": case
    for kind, cases in [
        ("wrong-type", WRONG_TYPE),
        ("unknown-key", UNKNOWN_KEY),
        ("out-of-range", OUT_OF_RANGE),
        ("not-in-set", NOT_IN_SET),
        ("bad-form", BAD_FORM),
    ]
    for name, case in cases.items()
}


@pytest.mark.parametrize(("settings", "where", "why"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_value_stops_the_install_naming_it(
    kube: ControlPlane, settings: list[str], where: str, why: str
) -> None:
    flags = [f"--set={s}" for s in settings]
    result = kube.helm("template", "backstop", str(CHART), *flags, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert where in result.stderr, result.stderr
    assert why in result.stderr, result.stderr
    assert result.stdout == ""
