"""Every metric the Grafana dashboard and the Prometheus rules name is one the code exports (or a recording rule
defines): a renamed metric fails here, not on an operator's empty panel or silent alert.

Exported names come from the code itself: each prometheus_client Counter, Gauge, Histogram or Summary created
with a literal name, in any module of the package, and the series each type serves (a histogram's `_bucket`,
`_sum`, `_count`; a counter's `_total` and `_created`).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.unit.test_layers import module_files

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "kafkatrail.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\bkafkatrail[_:][A-Za-z0-9_:]*")
SERIES = {"Counter": ("_total", "_created"), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count", "_created"),
          "Summary": ("", "_sum", "_count", "_created")}


def registrations() -> dict[str, str]:
    """Metric name -> type, of every metric created with a literal name in the package's modules (under any name
    its module imported the type as)."""
    found = {}
    for path in set(module_files().values()):
        if path.suffix != ".py":
            continue
        tree = ast.parse(path.read_text())
        aliases = {alias.asname or alias.name: alias.name for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client" for alias in node.names}
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call) or not call.args:
                continue
            kind = aliases.get(call.func.id) if isinstance(call.func, ast.Name) else None
            name = call.args[0]
            if kind in SERIES and isinstance(name, ast.Constant) and isinstance(name.value, str):
                found[name.value] = kind
    return found


def exported_series() -> set[str]:
    series = set()
    for name, kind in registrations().items():
        base = name.removesuffix("_total") if kind == "Counter" else name
        series.update(base + suffix for suffix in SERIES[kind])
    return series


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        for value in node.values():
            yield from dashboard_queries(value)
    elif isinstance(node, list):
        for value in node:
            yield from dashboard_queries(value)


def unknown_names(expressions: list[str], known: set[str]) -> set[str]:
    return {name for expr in expressions for name in METRIC.findall(expr) if name not in known}


def test_the_code_registers_the_metrics_the_rules_depend_on() -> None:
    found = registrations()
    assert len(found) > 30 and found["kafkatrail_s3_event_to_stored_seconds"] == "Histogram"
    assert found["kafkatrail_consumer_lag_records"] == "Gauge"


def test_every_dashboard_query_names_an_exported_metric_or_a_recording_rule() -> None:
    queries = list(dashboard_queries(json.loads(DASHBOARD.read_text())))
    assert len(queries) >= 20
    known = exported_series() | {rule["record"] for rule in rules() if "record" in rule}
    assert not unknown_names(queries, known), "the dashboard names metrics nobody exports"


def test_every_rule_names_an_exported_metric_or_a_recording_rule() -> None:
    known = exported_series() | {rule["record"] for rule in rules() if "record" in rule}
    assert not unknown_names([rule["expr"] for rule in rules()], known), "rules name metrics nobody exports"


def test_the_check_catches_a_misspelt_name() -> None:
    assert unknown_names(["rate(kafkatrail_s3_files_writen_total[5m])"], exported_series()) == {
        "kafkatrail_s3_files_writen_total"}
