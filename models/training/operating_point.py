"""The phone photos' operating point, chosen and measured by nested, patient-grouped cross-validation.

The three risk levels (models/serving/policy.py) are set by three thresholds on the calibrated probabilities:
where LOW ends (the malignant mass), and the two rules that forward a photo as HIGH (melanoma probability,
malignant mass). ``fit_phone_policy`` sets them on the photos it is given, for what the clinic asks:
- at most ``limits.malignant_told_low`` of the malignant or pre-malignant lesions under the LOW threshold;
- of the benign lesions, at most ``limits.benign_forwarded`` forwarded; within that budget, the pair of HIGH
  rules that forwards the most melanomas (then the most cancers).
Fitted on some patients, such thresholds are optimistic on them: the limits that meet the targets on *other*
patients are stricter. So the limits are chosen by an inner cross-validation (the candidates fitted on the inner
folds' training patients, scored on their held-out patients), the thresholds then fitted with them on the outer
fold's training patients, and measured on its held-out patients, who took no part in either choice. Every photo
is scored once per repeat, by a policy that never saw its patient. The shipped policy is the same procedure on
every patient (the inner cross-validation over all of them chooses the limits).

The answers are measured in the same loop, with the answer model (models/serving/triage.py) fitted on the outer
training patients only: as served now (they may lower a risk one level), and as floors that can only raise it.

    python -m models.training.operating_point [--repeats 5] [--write-artifact]
prints the outer-fold figures (with 95 % Wilson intervals) and writes models/evaluation/operating_point.json;
``--write-artifact`` also stores the chosen phone policy in the artifact's metadata.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.serving.inference import ARTIFACT_DIR, METADATA_FILE, ArtifactMetadata, artifact_version
from models.serving.metrics import balanced_accuracy, roc_auc, softmax, wilson_interval
from models.serving.policy import (
    HIGH_MALIGNANT_PROBABILITY,
    MALIGNANT_MASK,
    KindPolicy,
    assess_risk,
    assess_with_answers,
    choose_low_risk_threshold,
)
from models.serving.triage import TriageModel, answer_features, fit_triage
from models.training.calibration import fit_temperature
from models.training.pad_ufes import SHARED_CODES, PhoneSample, patient_answers, resolve_phone_data_root
from models.training.validation_data import CLINICAL_CV_FILE, TRIAGE_FILE, phone_validation_samples
from shared.answers import PatientAnswers
from shared.labels import CLASS_CODES, MELANOMA_INDEX, MelanomaFinding, RiskLevel

log = logging.getLogger(__name__)

OUTER_FOLDS, INNER_FOLDS = 5, 4


@dataclass(frozen=True)
class Targets:
    """The clinic's figures on new patients' phone photos (issue 19)."""

    malignant_told_low: float = 0.05
    benign_forwarded: float = 0.30
    melanoma_forwarded: float = 0.90
    benign_told_low: float = 0.55


TARGETS = Targets()


@dataclass(frozen=True)
class Limits:
    """What a fit allows on the photos it is fitted on (stricter than the targets: see the module)."""

    malignant_told_low: float
    benign_forwarded: float


CANDIDATE_LIMITS = tuple(
    Limits(low, forwarded) for low in (0.0, 0.01, 0.02, 0.03, 0.04, 0.05) for forwarded in (0.15, 0.2, 0.25, 0.3)
)


def malignant_mass(probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(probabilities[:, MALIGNANT_MASK].sum(axis=1))


def fit_phone_policy(probabilities: np.ndarray, labels: np.ndarray, limits: Limits) -> KindPolicy:
    """The three thresholds for these photos under ``limits`` (see the module)."""
    malignant, melanoma = malignant_mass(probabilities), probabilities[:, MELANOMA_INDEX]
    is_malignant, is_melanoma = MALIGNANT_MASK[labels], labels == MELANOMA_INDEX
    low_below = choose_low_risk_threshold(malignant, is_malignant, limits.malignant_told_low)
    benign_budget = math.floor(limits.benign_forwarded * (~is_malignant).sum())
    best: tuple[tuple[float, float, float], KindPolicy] | None = None
    # Each melanoma's probability is a candidate alert threshold (and above all of them: no alert but the
    # malignant rule's); the malignant rule then takes what is left of the benign budget.
    for alert_at in [*np.unique(melanoma[is_melanoma]), 1.0 + 1e-9]:
        alerted = melanoma >= alert_at
        left = benign_budget - int(alerted[~is_malignant].sum())
        if left < 0:
            continue
        others = np.sort(malignant[~is_malignant & ~alerted])[::-1]
        # Lowest threshold that forwards at most ``left`` more benign lesions: just above the next one's mass.
        high_at = float(np.nextafter(others[left], np.inf)) if left < len(others) else 0.0
        high_at = max(high_at, HIGH_MALIGNANT_PROBABILITY, low_below)  # HIGH is "more likely malignant than not"
        forwarded = alerted | (malignant >= high_at)
        melanomas_forwarded = float(forwarded[is_melanoma].mean()) if is_melanoma.any() else 0.0
        score = (melanomas_forwarded, float(forwarded[is_malignant].mean()), float(alert_at))
        if best is None or score > best[0]:
            best = (score, KindPolicy(float(alert_at), low_below, high_at))
    assert best is not None  # the last candidate forwards no benign lesion by alert
    return best[1]


def risk_levels(probabilities: np.ndarray, policy: KindPolicy) -> tuple[np.ndarray, np.ndarray]:
    assessments = [assess_risk(p, policy) for p in probabilities]
    return (
        np.array([a.risk for a in assessments]),
        np.array([a.melanoma_finding != MelanomaFinding.NONE for a in assessments]),
    )


def figures(levels: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    is_malignant, is_melanoma = MALIGNANT_MASK[labels], labels == MELANOMA_INDEX
    benign = ~is_malignant
    return {
        "malignant_told_low": float((levels[is_malignant] == RiskLevel.LOW).mean()),
        "benign_told_low": float((levels[benign] == RiskLevel.LOW).mean()),
        "benign_told_medium": float((levels[benign] == RiskLevel.MEDIUM).mean()),
        "benign_forwarded": float((levels[benign] == RiskLevel.HIGH).mean()),
        "melanoma_forwarded": float((levels[is_melanoma] == RiskLevel.HIGH).mean()) if is_melanoma.any() else 0.0,
    }


def shortfall(found: dict[str, float], targets: Targets = TARGETS) -> float:
    """How far the two hard limits are missed (0 when both are met)."""
    return max(0.0, found["malignant_told_low"] - targets.malignant_told_low) + max(
        0.0, found["benign_forwarded"] - targets.benign_forwarded
    )


def grouped_folds(labels: np.ndarray, groups: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """Fold of each photo: by patient (no patient in two folds), stratified by class."""
    from sklearn.model_selection import StratifiedGroupKFold

    fold_of = np.zeros(len(labels), dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels, list(groups))):
        fold_of[held_out] = fold
    return fold_of


def calibrated_fit(logits: np.ndarray, labels: np.ndarray, limits: Limits) -> tuple[float, KindPolicy]:
    temperature = fit_temperature(logits, labels)
    return temperature, fit_phone_policy(softmax(logits, temperature), labels, limits)


def choose_limits(logits: np.ndarray, labels: np.ndarray, groups: Sequence[str], seed: int) -> Limits:
    """The candidate limits whose policies, fitted on inner training patients, do best on the inner held-out
    patients: the two hard limits met (else missed least), then the most benign told LOW and melanomas
    forwarded."""
    fold_of = grouped_folds(labels, groups, INNER_FOLDS, seed)
    scored: list[tuple[tuple[float, float, float], Limits]] = []
    for limits in CANDIDATE_LIMITS:
        levels = np.empty(len(labels), dtype=object)
        for fold in range(INNER_FOLDS):
            fit, held = fold_of != fold, fold_of == fold
            temperature, policy = calibrated_fit(logits[fit], labels[fit], limits)
            levels[held] = risk_levels(softmax(logits[held], temperature), policy)[0]
        found = figures(levels, labels)
        scored.append(((-shortfall(found), found["melanoma_forwarded"], found["benign_told_low"]), limits))
    return max(scored, key=lambda item: item[0])[1]


@dataclass
class OuterScores:
    """Every photo's outer-fold result in one repeat."""

    photo_probabilities: np.ndarray
    with_answers_probabilities: np.ndarray
    levels: dict[str, np.ndarray]  # per rule of ANSWER_RULES
    alerts: dict[str, np.ndarray]  # melanoma alert (finding "likely" or "cannot be ruled out"), per rule
    limits_chosen: list[Limits]

    def probabilities(self, rule: str) -> np.ndarray:
        return self.with_answers_probabilities if rule == "answers_as_served" else self.photo_probabilities


ANSWER_RULES = ("photo_only", "answers_as_served", "answers_only_raise")


def outer_scores(
    logits: np.ndarray, labels: np.ndarray, groups: Sequence[str], answers: Sequence[PatientAnswers], seed: int
) -> OuterScores:
    fold_of = grouped_folds(labels, groups, OUTER_FOLDS, seed)
    photo = np.zeros_like(logits, dtype=np.float64)
    combined = np.zeros_like(photo)
    levels = {rule: np.empty(len(labels), dtype=object) for rule in ANSWER_RULES}
    alerts = {rule: np.zeros(len(labels), dtype=bool) for rule in ANSWER_RULES}
    features = np.stack([answer_features(a) for a in answers])
    chosen: list[Limits] = []
    for fold in range(OUTER_FOLDS):
        fit, held = fold_of != fold, fold_of == fold
        fit_groups = [g for g, f in zip(groups, fit, strict=True) if f]
        limits = choose_limits(logits[fit], labels[fit], fit_groups, seed + 1000 * (fold + 1))
        chosen.append(limits)
        temperature, policy = calibrated_fit(logits[fit], labels[fit], limits)
        triage = fit_triage(softmax(logits[fit], temperature), labels[fit], features[fit])
        for index in np.flatnonzero(held).tolist():
            photo[index] = softmax(logits[index : index + 1], temperature)[0]
            combined[index] = triage.combine(photo[index], answers[index])
            assessments = {
                "photo_only": assess_risk(photo[index], policy),
                "answers_as_served": assess_with_answers(photo[index], combined[index], policy, answers[index]),
                "answers_only_raise": assess_risk(photo[index], policy, answers[index]),
            }
            for rule, assessment in assessments.items():
                levels[rule][index] = assessment.risk
                alerts[rule][index] = assessment.melanoma_finding != MelanomaFinding.NONE
    return OuterScores(photo, combined, levels, alerts, chosen)


def counted(levels: np.ndarray, labels: np.ndarray, rows: np.ndarray, level: RiskLevel) -> dict[str, Any]:
    hits, total = int((levels[rows] == level).sum()), int(rows.sum())
    low, high = wilson_interval(hits, total)
    return {"share": hits / total if total else None, "count": hits, "of": total, "ci95": [low, high]}


def clinic_view(
    levels: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, scored_codes: Sequence[str] = SHARED_CODES
) -> dict[str, Any]:
    """The clinic's figures of one set of results, with intervals (skinsense evaluate shows these); the balanced
    accuracy over ``scored_codes`` (phone photos: the 5 classes PAD-UFES-20 shares with HAM10000)."""
    is_malignant, is_melanoma = MALIGNANT_MASK[labels], labels == MELANOMA_INDEX
    benign = ~is_malignant
    scored = np.isin(labels, [CLASS_CODES.index(c) for c in scored_codes])
    return {
        "photos": len(labels),
        "malignant_told_low": counted(levels, labels, is_malignant, RiskLevel.LOW),
        "benign_told_low": counted(levels, labels, benign, RiskLevel.LOW),
        "benign_told_medium": counted(levels, labels, benign, RiskLevel.MEDIUM),
        "benign_forwarded": counted(levels, labels, benign, RiskLevel.HIGH),
        "melanoma_forwarded": counted(levels, labels, is_melanoma, RiskLevel.HIGH),
        "forwarded": counted(levels, labels, np.ones(len(labels), dtype=bool), RiskLevel.HIGH),
        "balanced_accuracy": balanced_accuracy(labels[scored], probabilities[scored].argmax(axis=1)),
        "malignant_ranking_auc": roc_auc(malignant_mass(probabilities), is_malignant),
        "per_class": {
            code: {level.value: counted(levels, labels, labels == index, level)["share"] for level in RiskLevel}
            for index, code in enumerate(CLASS_CODES)
            if (labels == index).any()
        },
    }


def by_group(
    view: Callable[[np.ndarray], dict[str, Any]], groups: Sequence[str | None], minimum: int = 10
) -> dict[str, Any]:
    """``view`` of each group's photos (Fitzpatrick type, ITA group): only groups with ``minimum`` photos."""
    values = np.array([g or "unknown" for g in groups])
    return {
        str(group): view(values == group) for group in sorted(set(values)) if int((values == group).sum()) >= minimum
    }


def nested_runs(samples: Sequence[PhoneSample], logits: np.ndarray, repeats: int) -> list[OuterScores]:
    """The outer-fold results of ``repeats`` nested cross-validations (other patient folds each time)."""
    labels = np.array([s.label for s in samples])
    groups = [s.patient_id for s in samples]
    answers = [patient_answers(s) for s in samples]
    return [outer_scores(logits, labels, groups, answers, seed) for seed in range(repeats)]


def nested_report(
    samples: Sequence[PhoneSample], runs: Sequence[OuterScores], skin_tones: Sequence[str | None] | None = None
) -> dict[str, Any]:
    """The clinic's view of the first repeat per answer rule (with intervals, per class, per Fitzpatrick type and,
    given ``skin_tones``, per ITA group of models/serving/skin_tone.py), and the spread of the target figures
    over every repeat."""
    labels = np.array([s.label for s in samples])
    report: dict[str, Any] = {
        "photos": len(samples),
        "patients": len({s.patient_id for s in samples}),
        "repeats": len(runs),
    }
    first = runs[0]
    skin_types = [s.fitzpatrick for s in samples]
    for rule in ANSWER_RULES:
        probabilities, levels = first.probabilities(rule), first.levels[rule]
        report[rule] = clinic_view(levels, probabilities, labels)

        def risk_figures(
            rows: np.ndarray, levels: np.ndarray = levels, probabilities: np.ndarray = probabilities
        ) -> dict[str, Any]:
            view = clinic_view(levels[rows], probabilities[rows], labels[rows])
            return {k: v for k, v in view.items() if k not in ("per_class", "balanced_accuracy")}

        report[rule]["by_fitzpatrick"] = by_group(risk_figures, skin_types)
        if skin_tones is not None:
            report[rule]["by_skin_tone"] = by_group(risk_figures, skin_tones)
        report[rule]["over_repeats"] = {
            name: [figures(run.levels[rule], labels)[name] for run in runs] for name in asdict(TARGETS)
        }
    report["limits_chosen"] = [[asdict(limits) for limits in run.limits_chosen] for run in runs]
    report["targets"] = asdict(TARGETS)
    return report


def shipped_policy(samples: Sequence[PhoneSample], logits: np.ndarray) -> tuple[Limits, float, KindPolicy]:
    """The served phone policy: limits chosen by cross-validation over every patient, fitted on all of them."""
    labels = np.array([s.label for s in samples])
    limits = choose_limits(logits, labels, [s.patient_id for s in samples], seed=0)
    temperature, policy = calibrated_fit(logits, labels, limits)
    return limits, temperature, policy


def fit_answers(samples: Sequence[PhoneSample], logits: np.ndarray, temperature: float) -> TriageModel:
    """The answer model on every phone photo's out-of-fold probabilities and recorded answers."""
    features = np.stack([answer_features(patient_answers(s)) for s in samples])
    return fit_triage(softmax(logits, temperature), np.array([s.label for s in samples]), features)


def write_to_artifact(
    artifact_dir: Path, samples: Sequence[PhoneSample], logits: np.ndarray, report: dict[str, Any]
) -> None:
    """The shipped phone policy and answer model (as ``package`` writes them), without training anew."""
    shipped = report["shipped"]
    fit_answers(samples, logits, shipped["temperature"]).save(artifact_dir / TRIAGE_FILE)
    path = artifact_dir / METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata["kinds"]["clinical"].update(phone_kind_settings(report))
    risk_policy = metadata["training"].setdefault("risk_policy", {})
    risk_policy["phone_operating_point"] = shipped
    for name in ("max_malignant_told_low", "melanoma_sensitivity"):  # phone photos no longer use these
        risk_policy.get(name, {}).pop("clinical", None)
    metadata["version"] = artifact_version(artifact_dir, ArtifactMetadata.model_validate(metadata).model_files())
    path.write_text(json.dumps(metadata, indent=2) + "\n")


def phone_kind_settings(report: dict[str, Any]) -> dict[str, float]:
    """The clinical kind's settings in the artifact metadata, from a nested report with its shipped policy."""
    policy = report["shipped"]["policy"]
    return {
        "temperature": round(report["shipped"]["temperature"], 6),
        "melanoma_alert_threshold": round(policy["melanoma_alert_threshold"], 6),
        "low_risk_below": round(policy["low_risk_below"], 6),
        "high_malignant_at": round(policy["high_malignant_at"], 6),
        # Patients read it: the photo-only outer-fold figure (the answers lower it, when given).
        "malignant_told_low_per_100": round(100 * report["photo_only"]["malignant_told_low"]["share"], 1),
    }


def phone_operating_point(samples: Sequence[PhoneSample], logits: np.ndarray, repeats: int) -> dict[str, Any]:
    """The nested report and the shipped policy (under "shipped") of these phone photos' out-of-fold logits."""
    report = nested_report(samples, nested_runs(samples, logits, repeats))
    limits, temperature, policy = shipped_policy(samples, logits)
    report["shipped"] = {"limits": asdict(limits), "temperature": temperature, "policy": asdict(policy)}
    return report


def load_phone_logits(artifact_dir: Path, phone_root: Path) -> tuple[list[PhoneSample], np.ndarray]:

    samples = phone_validation_samples(phone_root, artifact_dir)
    with np.load(artifact_dir / CLINICAL_CV_FILE) as cross_validation:
        by_id = dict(zip(cross_validation["ids"].tolist(), cross_validation["logits"], strict=True))
    return samples, np.stack([by_id[s.image_id] for s in samples])


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['photos']} phone photos of {report['patients']} patients; outer folds of nested CV"]
    names = ("malignant_told_low", "benign_told_low", "benign_told_medium", "benign_forwarded", "melanoma_forwarded")
    for rule in ANSWER_RULES:
        view = report[rule]
        lines.append(f"{rule}:")
        for name in names:
            figure = view[name]
            low, high = figure["ci95"]
            spread = report[rule]["over_repeats"].get(name)
            repeats = f"; repeats {min(spread):.1%}-{max(spread):.1%}" if spread else ""
            lines.append(
                f"  {name:20s} {figure['share']:6.1%} ({figure['count']}/{figure['of']}, {low:.1%}-{high:.1%}{repeats})"
            )
        lines.append(
            f"  balanced accuracy {view['balanced_accuracy']:.3f}, "
            f"malignant ranking AUC {view['malignant_ranking_auc']:.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phone-data-dir", type=Path, default=None)
    parser.add_argument("--artifact-dir", type=Path, default=ARTIFACT_DIR)
    parser.add_argument("--output", type=Path, default=Path("models/evaluation"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write-artifact", action="store_true", help="store the chosen phone policy")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    samples, logits = load_phone_logits(args.artifact_dir, resolve_phone_data_root(args.phone_data_dir))
    report = phone_operating_point(samples, logits, args.repeats)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "operating_point.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    print(f"shipped: {report['shipped']}")
    if args.write_artifact:
        write_to_artifact(args.artifact_dir, samples, logits, report)


if __name__ == "__main__":
    main()
