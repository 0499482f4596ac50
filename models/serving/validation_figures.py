"""The served model's own validation figures, for drift monitoring: per photo kind, the share of validation
photos told each risk level and the share the gates refused (models/evaluation/metrics.json, written by
`skinsense evaluate` for the artifact). Read only when the evaluation is of the served model version: figures of
another model would make the comparison meaningless."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

EVALUATION_FILE = Path(__file__).resolve().parents[1] / "evaluation" / "metrics.json"
RISK_MEASURES = ("low", "medium", "high")


def validation_shares(model_version: str, evaluation_file: Path = EVALUATION_FILE) -> dict[tuple[str, str], float]:
    """``{(photo kind, measure): share}`` with measures risk_low, risk_medium, risk_high and refused; empty when
    the evaluation is missing or of another model version (logged)."""
    try:
        evaluation = json.loads(evaluation_file.read_text())
    except (OSError, ValueError) as error:
        log.warning("no validation figures for drift monitoring (%s)", type(error).__name__)
        return {}
    if evaluation.get("model_version") != model_version:
        log.warning(
            "the evaluation is of model %s, not %s: no drift baseline", evaluation.get("model_version"), model_version
        )
        return {}
    shares: dict[tuple[str, str], float] = {}
    for kind, figures in evaluation.get("kinds", {}).items():
        risk_shares = figures.get("as_shipped", {}).get("risk_shares", {})
        for risk in RISK_MEASURES:
            if risk in risk_shares:
                shares[(kind, f"risk_{risk}")] = float(risk_shares[risk])
        refused = figures.get("gates", {}).get("refused_share")
        if refused is not None:
            shares[(kind, "refused")] = float(refused)
    return shares
