"""Drift's baseline: the served model's validation figures, read only for that model version; and the alert rules
name only metrics the workers export."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

import shared.metrics  # noqa: F401  (registers the metrics)
from models.serving.inference import read_metadata
from models.serving.validation_figures import EVALUATION_FILE, validation_shares

RULES = Path(__file__).resolve().parents[2] / "ops" / "prometheus-rules" / "drift.yml"


def test_the_served_models_validation_shares_are_read_and_another_versions_are_not() -> None:
    shares = validation_shares(read_metadata().version)
    for kind in ("clinical", "dermoscopic"):
        risks = [shares[(kind, f"risk_{risk}")] for risk in ("low", "medium", "high")]
        assert abs(sum(risks) - 1) < 1e-6, kind
        assert 0 <= shares[(kind, "refused")] < 1
    assert validation_shares("another-model") == {}
    assert validation_shares(read_metadata().version, EVALUATION_FILE.with_name("missing.json")) == {}


def test_the_drift_rules_use_only_metrics_the_workers_export() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    exported = {sample_name for metric in REGISTRY.collect() for sample_name in _sample_names(metric)}
    recorded = {rule["record"] for rule in rules if "record" in rule}
    for rule in rules:
        for name in re.findall(r"\bskinsense[_:][a-z0-9_:]+", rule["expr"]):
            assert name in exported or name in recorded, name
    assert {rule["alert"] for rule in rules if "alert" in rule} == {
        "SkinSenseRiskMixDrift",
        "SkinSenseRefusalsDrift",
        "SkinSensePhotoKindDrift",
    }


def _sample_names(metric: Metric) -> set[str]:
    return {f"{metric.name}_total"} if metric.type == "counter" else {metric.name}
