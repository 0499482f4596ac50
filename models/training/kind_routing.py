"""The photo's kind, measured where it matters: the picture head's kind errors on phone photos of patients it never
saw, and the band of models/serving/screening.py (phone network, both, dermoscopy network) chosen by nested grouped
cross-validation. ``python -m models.training.kind_routing`` prints the figures (about 10 minutes on one core the
first time; the embeddings and network logits are cached under /tmp).

- The picture head is refitted as models/training/package.py fits it (models/training/picture_training.py: the same
  examples, groups and regularisation). Outer folds (GroupKFold by patient, lesion or picture source, as
  ``cross_validated_probabilities``) give every phone photo and HAM10000 training image kind probabilities from a
  head that never saw its patient or lesion.
- Inside each outer fold's training part, inner folds give out-of-fold shares on which ``choose_band`` picks the
  band; the outer fold's held-out photos are routed with that band and that fold's head: the held-out figures.
- HAM10000's validation split is outside every fit: routed by each outer fold's head and band (figures averaged
  over the folds), and by the shipped head with the shipped band (as served).
- The shipped band: ``choose_band`` on the outer out-of-fold shares of all examples (the shipped head is fitted on
  all of them).
- What routing costs in risk: each photo's result from the phone network and from the dermoscopy network, neither
  trained on it (phone photos: the cross-validation runs' out-of-fold logits, models/artifact/
  clinical_cross_validation.npz; HAM10000 validation: the phone network never saw HAM10000), with the shipped
  per-kind policy, routed before (the head's more likely kind) and after (the band, both networks in between).
  The shipped clinical thresholds were fitted on these phone photos' out-of-fold logits, so those figures are
  somewhat optimistic for both routings alike.
Every share is over all photos of a kind: refused and misrouted photos included.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.serving.inference import ARTIFACT_DIR, PICTURE_CLASSES, Classifier, GateSettings, Prediction
from models.serving.policy import RISK_ORDER
from models.serving.screening import dermoscopic_share, read_as_likelier_kind, route_kind
from models.serving.skin_tone import estimate_skin_tone
from models.training.data import load_prepared, load_prepared_images, read_samples, resolve_data_dir
from models.training.kind_fit import is_malignant
from models.training.operating_point import clinic_view, nested_runs
from models.training.pad_ufes import PhoneSample, read_phone_samples, resolve_phone_data_root
from models.training.picture_training import build_picture_examples, fit_picture_head, refused
from models.training.validation_data import CLINICAL_CV_FILE, SPLIT_FILE, phone_validation_samples, validation_samples
from shared.labels import MELANOMA_INDEX, PhotoKind, RiskLevel

log = logging.getLogger(__name__)
OUTER_FOLDS = 5
INNER_FOLDS = 4
# The band's targets on the inner folds' out-of-fold shares. Phone photos sent to the dermoscopy network alone:
# at most 1 % there, a margin under the product's 2 % on new patients (about 260 photos per inner fit: one photo
# is 0.4 %). Dermoscopy photos sent to the phone network alone: at most 0.5 % (HAM10000's thousands of images
# measure it closely); the rest of the not-clearly-dermoscopic ones get both networks.
MAX_PHONE_TO_DERMOSCOPY = 0.01
MAX_DERMOSCOPY_TO_PHONE = 0.005
OUTCOMES = ("refused", "clinical", "uncertain", "dermoscopic")
PHONE, HAM = "pad", "ham"  # picture_training's sources of the real phone photos and HAM10000 training images


@dataclass(frozen=True)
class Band:
    clinical_share_under: float
    dermoscopic_share_at_least: float


def choose_band(
    phone_shares: np.ndarray,
    dermoscopy_shares: np.ndarray,
    max_phone_to_dermoscopy: float = MAX_PHONE_TO_DERMOSCOPY,
    max_dermoscopy_to_phone: float = MAX_DERMOSCOPY_TO_PHONE,
) -> Band:
    """The lowest dermoscopic share that sends at most ``max_phone_to_dermoscopy`` of these phone photos to the
    dermoscopy network alone, and the highest (not above it) that sends at most ``max_dermoscopy_to_phone`` of
    these dermoscopy photos to the phone network alone. Each threshold sits halfway between the last photo let
    through and the next, not on a photo's own value."""
    phone = np.sort(phone_shares)[::-1]
    allowed = int(np.floor(max_phone_to_dermoscopy * len(phone)))
    upper = 1.0 if allowed == 0 else float(phone[allowed - 1])
    at_least = (upper + float(phone[allowed])) / 2
    dermoscopy = np.sort(dermoscopy_shares)
    allowed = int(np.floor(max_dermoscopy_to_phone * len(dermoscopy)))
    lower = 0.0 if allowed == 0 else float(dermoscopy[allowed - 1])
    under = min((lower + float(dermoscopy[allowed])) / 2, at_least)
    return Band(under, at_least)


def route_outcomes(probabilities: np.ndarray, gates: GateSettings, band: Band | None) -> np.ndarray:
    """Per photo: refused, or where models/serving/screening.py sends it (``band`` None: the rule before it, the
    picture head's more likely kind)."""
    if band is not None:
        gates = gates.model_copy(update=vars(band))
    else:
        gates = gates.model_copy(update={"clinical_share_under": 0.5, "dermoscopic_share_at_least": 0.5})
    outcomes = []
    for share, is_refused in zip(dermoscopic_share(probabilities), refused(probabilities), strict=True):
        route = route_kind(float(share), gates)
        outcomes.append("refused" if is_refused else "uncertain" if route.uncertain else route.kind.value)
    return np.array(outcomes)


def outcome_shares(outcomes: np.ndarray) -> dict[str, float]:
    return {name: float((outcomes == name).mean()) for name in OUTCOMES}


@dataclass(frozen=True)
class PictureData:
    """Everything the nested cross-validation needs, cached: embeddings of the picture head's examples and of
    HAM10000's validation split, and each photo's logits from both kinds' networks."""

    embeddings: np.ndarray
    targets: np.ndarray
    groups: np.ndarray
    sources: np.ndarray
    phone_ids: np.ndarray  # the rows of source PHONE, in order
    phone_labels: np.ndarray
    phone_dermoscopic_logits: np.ndarray
    ham_validation_embeddings: np.ndarray
    ham_validation_labels: np.ndarray
    ham_validation_dermoscopic_logits: np.ndarray
    ham_validation_clinical_logits: np.ndarray

    def save(self, path: Path) -> None:
        np.savez(path, **vars(self))

    @classmethod
    def load(cls, path: Path) -> PictureData:
        with np.load(path) as arrays:
            return cls(**{name: arrays[name] for name in arrays.files})


def build_picture_data(classifier: Classifier, data_dir: Path, phone_root: Path) -> PictureData:
    """The picture head's examples as models/training/package.py builds them; HAM10000's training part is every
    image outside the artifact's validation split (the dermoscopy run's split; checked: no lesion on both sides)."""
    validation = validation_samples(data_dir)
    held_out = {s.image_id for s in validation}
    ham_train = [s for s in read_samples(data_dir) if s.image_id not in held_out]
    if {s.lesion_id for s in ham_train} & {s.lesion_id for s in validation}:
        raise SystemExit("a HAM10000 lesion is on both sides of the artifact's split")
    phone = read_phone_samples(phone_root, include_crops=False)
    if [s.image_id for s in phone] != [s.image_id for s in phone_validation_samples(phone_root)]:
        raise SystemExit(f"the phone photos are not in the order of the artifact's {SPLIT_FILE}")
    log.info("embedding the picture head's examples (%d HAM10000 training images and more)", len(ham_train))
    examples = build_picture_examples(classifier.embeddings, data_dir, ham_train, phone)
    embeddings, targets, groups, sources = examples.arrays()
    log.info("both networks on %d phone photos and %d HAM10000 validation images", len(phone), len(validation))
    phone_images = load_prepared([s.path for s in phone])
    ham_images = load_prepared_images(data_dir, validation)
    ham_embeddings = classifier.embeddings(ham_images)
    return PictureData(
        embeddings=embeddings,
        targets=targets,
        groups=groups,
        sources=sources,
        phone_ids=np.array([s.image_id for s in phone]),
        phone_labels=np.array([s.label for s in phone]),
        phone_dermoscopic_logits=classifier.logits(phone_images, PhotoKind.DERMOSCOPIC),
        ham_validation_embeddings=ham_embeddings,
        ham_validation_labels=np.array([s.label for s in validation]),
        ham_validation_dermoscopic_logits=classifier.logits(ham_images, PhotoKind.DERMOSCOPIC),
        ham_validation_clinical_logits=classifier.logits(ham_images, PhotoKind.CLINICAL, ham_embeddings),
    )


def load_or_build(classifier: Classifier, data_dir: Path, phone_root: Path, cache: Path) -> PictureData:
    if cache.is_file():
        log.info("embeddings and logits from %s", cache)
        return PictureData.load(cache)
    data = build_picture_data(classifier, data_dir, phone_root)
    data.save(cache)
    return data


def _group_folds(groups: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold

    return list(GroupKFold(n_splits=folds).split(np.zeros(len(groups)), groups=groups))


@dataclass(frozen=True)
class NestedRouting:
    out_of_fold: np.ndarray  # (examples, 5): each example from the outer head that never saw its group
    fold_of: np.ndarray  # outer fold of each example
    bands: list[Band]  # per outer fold, chosen on its inner folds
    ham_validation: list[np.ndarray]  # per outer fold: HAM10000 validation probabilities from that fold's head


def nested_routing(
    data: PictureData,
    outer: int = OUTER_FOLDS,
    inner: int = INNER_FOLDS,
    max_phone_to_dermoscopy: float = MAX_PHONE_TO_DERMOSCOPY,
    max_dermoscopy_to_phone: float = MAX_DERMOSCOPY_TO_PHONE,
) -> NestedRouting:
    out_of_fold = np.zeros((len(data.targets), len(PICTURE_CLASSES)))
    fold_of = np.zeros(len(data.targets), dtype=np.int64)
    bands, ham_validation = [], []
    for fold, (fit, held_out) in enumerate(_group_folds(data.groups, outer)):
        inner_shares = np.zeros(len(fit))
        for inner_fit, inner_held_out in _group_folds(data.groups[fit], inner):
            head = fit_picture_head(data.embeddings[fit][inner_fit], data.targets[fit][inner_fit])
            inner_shares[inner_held_out] = dermoscopic_share(head.probabilities(data.embeddings[fit][inner_held_out]))
        band = choose_band(
            inner_shares[data.sources[fit] == PHONE],
            inner_shares[data.sources[fit] == HAM],
            max_phone_to_dermoscopy,
            max_dermoscopy_to_phone,
        )
        head = fit_picture_head(data.embeddings[fit], data.targets[fit])
        out_of_fold[held_out] = head.probabilities(data.embeddings[held_out])
        fold_of[held_out] = fold
        bands.append(band)
        ham_validation.append(head.probabilities(data.ham_validation_embeddings))
        log.info("outer fold %d: %s", fold, band)
    return NestedRouting(out_of_fold, fold_of, bands, ham_validation)


def served_results(
    classifier: Classifier, outcomes: np.ndarray, logits: dict[PhotoKind, np.ndarray], shares: np.ndarray
) -> list[Prediction | None]:
    """Each photo's result as models/serving/screening.py gives it for its route (None: refused); an uncertain
    photo is read by the more likely kind's network (``shares``: each photo's dermoscopic share), its risk never
    under the other network's."""
    predictions = {
        kind: [classifier.prediction(p, kind) for p in classifier.probabilities(kind_logits, [kind] * len(kind_logits))]
        for kind, kind_logits in logits.items()
    }
    results: list[Prediction | None] = []
    for index, outcome in enumerate(outcomes):
        if outcome == "refused":
            results.append(None)
        elif outcome == "uncertain":
            likely = PhotoKind.DERMOSCOPIC if shares[index] >= 0.5 else PhotoKind.CLINICAL
            other = predictions[next(kind for kind in PhotoKind if kind != likely)][index]
            results.append(read_as_likelier_kind(classifier, predictions[likely][index], other))
        else:
            results.append(predictions[PhotoKind(outcome)][index])
    return results


def risk_figures(results: Sequence[Prediction | None], labels: np.ndarray) -> dict[str, str]:
    """Over all photos of the kind (refused ones are told nothing: neither LOW nor an alert)."""
    malignant = is_malignant(labels)
    told_low = np.array([r is not None and r.risk == RiskLevel.LOW for r in results])
    alert = np.array([r is not None and r.melanoma_alert for r in results])
    melanoma = labels == MELANOMA_INDEX

    def share(hits: np.ndarray, of: np.ndarray) -> str:
        return f"{hits[of].sum()}/{of.sum()} = {hits[of].mean():.3f}"

    return {
        "malignant told LOW": share(told_low, malignant),
        "benign told LOW": share(told_low, ~malignant),
        "melanoma alerted": share(alert, melanoma),
    }


def phone_photos_as_served(
    classifier: Classifier,
    outcomes: np.ndarray,
    shares: np.ndarray,
    dermoscopic_logits: np.ndarray,
    samples: Sequence[PhoneSample],
    phone_logits: np.ndarray,
) -> dict[str, object]:
    """The clinic's figures over **every** phone photo, each routed as the served band routes it on held-out
    patients: the phone network's result from the nested cross-validation's outer folds (policy and answer model
    fitted on other patients, models/training/operating_point.py), the dermoscopy network's with its own policy
    (it never saw a phone photo), the higher risk of the two where the kind is uncertain, and LOW made MEDIUM
    where the skin is darker than the kind was measured on (models/serving/skin_tone.py). A refused photo is told
    nothing: neither LOW nor forwarded."""
    darker = [
        tone is not None and tone.outside_measured_range
        for tone in (
            estimate_skin_tone(image, PhotoKind.CLINICAL) for image in load_prepared([s.path for s in samples])
        )
    ]
    run = nested_runs(samples, phone_logits, repeats=1)[0]
    labels = np.array([s.label for s in samples])
    dermoscopic = classifier.probabilities(dermoscopic_logits, [PhotoKind.DERMOSCOPIC] * len(labels))
    dermoscopic_risk = [classifier.prediction(p, PhotoKind.DERMOSCOPIC).risk for p in dermoscopic]
    figures: dict[str, object] = {"routes": outcome_shares(outcomes)}
    for rule in ("photo_only", "answers_as_served"):
        levels = np.empty(len(labels), dtype=object)
        probabilities = run.probabilities(rule).copy()
        for index, outcome in enumerate(outcomes.tolist()):
            likely_dermoscopic = shares[index] >= 0.5
            # The answers combine only with a phone reading: with the likelier kind dermoscopic, the phone
            # network's photo-only result is the floor.
            phone = run.levels["photo_only" if likely_dermoscopic else rule][index]
            if outcome == "refused":
                levels[index] = None
            elif outcome == "clinical":
                levels[index] = phone
            elif outcome == "dermoscopic":
                levels[index], probabilities[index] = dermoscopic_risk[index], dermoscopic[index]
            else:
                levels[index] = max(phone, dermoscopic_risk[index], key=RISK_ORDER.index)
                if likely_dermoscopic:
                    probabilities[index] = dermoscopic[index]
            if darker[index] and levels[index] == RiskLevel.LOW:
                levels[index] = RiskLevel.MEDIUM
        figures[rule] = clinic_view(levels, probabilities, labels)
    return figures


def report(
    classifier: Classifier,
    data: PictureData,
    nested: NestedRouting,
    artifact_dir: Path,
    max_phone_to_dermoscopy: float = MAX_PHONE_TO_DERMOSCOPY,
    max_dermoscopy_to_phone: float = MAX_DERMOSCOPY_TO_PHONE,
    phone_samples: Sequence[PhoneSample] = (),
) -> dict[str, object]:
    gates = classifier.metadata.gates
    phone_rows = data.sources == PHONE
    with np.load(artifact_dir / CLINICAL_CV_FILE) as cross_validation:
        if cross_validation["ids"].tolist() != data.phone_ids.tolist():
            raise SystemExit(f"{CLINICAL_CV_FILE} is not in the order of the phone photos")
        phone_clinical_logits = cross_validation["logits"]
    held_out_before = route_outcomes(nested.out_of_fold, gates, None)
    held_out_after = np.empty(len(data.targets), dtype=held_out_before.dtype)
    for fold, band in enumerate(nested.bands):
        rows = nested.fold_of == fold
        held_out_after[rows] = route_outcomes(nested.out_of_fold[rows], gates, band)
    shipped_band = choose_band(
        dermoscopic_share(nested.out_of_fold[phone_rows]),
        dermoscopic_share(nested.out_of_fold[data.sources == HAM]),
        max_phone_to_dermoscopy,
        max_dermoscopy_to_phone,
    )
    served_band = Band(gates.clinical_share_under, gates.dermoscopic_share_at_least)
    phone_logits = {PhotoKind.DERMOSCOPIC: data.phone_dermoscopic_logits, PhotoKind.CLINICAL: phone_clinical_logits}
    ham_logits = {
        PhotoKind.DERMOSCOPIC: data.ham_validation_dermoscopic_logits,
        PhotoKind.CLINICAL: data.ham_validation_clinical_logits,
    }
    ham_before = np.concatenate([route_outcomes(p, gates, None) for p in nested.ham_validation])
    ham_after = np.concatenate(
        [route_outcomes(p, gates, band) for p, band in zip(nested.ham_validation, nested.bands, strict=True)]
    )
    shipped_head_ham = classifier.picture_head.probabilities(data.ham_validation_embeddings)
    ham_served_before = route_outcomes(shipped_head_ham, gates, None)
    ham_served_after = route_outcomes(shipped_head_ham, gates, served_band)
    # The refit matches the shipped head (same examples and settings) up to the solver's tolerance: checked here.
    refit = fit_picture_head(data.embeddings, data.targets).probabilities(data.ham_validation_embeddings)
    folds = len(nested.bands)
    phone_ids = data.phone_ids
    melanoma = data.phone_labels == MELANOMA_INDEX
    ham_labels = np.tile(data.ham_validation_labels, folds)
    ham_logits_tiled = {kind: np.tile(logits, (folds, 1)) for kind, logits in ham_logits.items()}
    phone_shares = dermoscopic_share(nested.out_of_fold[phone_rows])
    ham_shares = np.concatenate([dermoscopic_share(p) for p in nested.ham_validation])
    return {
        "picture head refitted on every example vs the shipped one, largest probability difference on HAM10000 "
        "validation": float(np.abs(refit - shipped_head_ham).max()),
        "bands chosen on the inner folds, per outer fold": [vars(band) for band in nested.bands],
        "band chosen on the outer out-of-fold shares (to ship)": vars(shipped_band),
        "band in the artifact's metadata": vars(served_band),
        f"phone photos, {int(phone_rows.sum())}, held-out patients": {
            "before (more likely kind)": outcome_shares(held_out_before[phone_rows]),
            "after (band, nested)": outcome_shares(held_out_after[phone_rows]),
        },
        f"HAM10000 training images, {int((data.sources == HAM).sum())}, held-out lesions": {
            "before (more likely kind)": outcome_shares(held_out_before[data.sources == HAM]),
            "after (band, nested)": outcome_shares(held_out_after[data.sources == HAM]),
        },
        f"HAM10000 validation images, {len(data.ham_validation_labels)}, never fitted on": {
            "before, outer heads (mean of folds)": outcome_shares(ham_before),
            "after, outer heads and their bands (mean of folds)": outcome_shares(ham_after),
            "before, shipped head": outcome_shares(ham_served_before),
            "after, shipped head and the artifact's band": outcome_shares(ham_served_after),
        },
        "phone melanomas, held-out patients (counts)": {
            name: {o: int((outcomes[phone_rows][melanoma] == o).sum()) for o in OUTCOMES}
            for name, outcomes in (("before", held_out_before), ("after", held_out_after))
        },
        "risk, phone photos (held-out routing, out-of-fold phone logits, shipped policies)": {
            name: risk_figures(served_results(classifier, outcomes, phone_logits, phone_shares), data.phone_labels)
            for name, outcomes in (
                ("before", held_out_before[phone_rows]),
                ("after", held_out_after[phone_rows]),
                (
                    "every photo to the phone network (no routing errors, no refusals)",
                    np.full(len(phone_ids), "clinical"),
                ),
            )
        },
        "every phone photo as served (held-out routing, nested outer-fold phone policy; issue 19's figures)": (
            phone_photos_as_served(
                classifier,
                held_out_after[phone_rows],
                phone_shares,
                data.phone_dermoscopic_logits,
                phone_samples,
                phone_clinical_logits,
            )
            if phone_samples
            else None
        ),
        "risk, HAM10000 validation (outer heads, all folds pooled, shipped policies)": {
            name: risk_figures(served_results(classifier, outcomes, ham_logits_tiled, ham_shares), ham_labels)
            for name, outcomes in (
                ("before", ham_before),
                ("after", ham_after),
                ("every photo to the dermoscopy network", np.full(len(ham_labels), "dermoscopic")),
            )
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--phone-data-dir", type=Path, default=None)
    parser.add_argument("--artifact-dir", type=Path, default=ARTIFACT_DIR)
    parser.add_argument("--cache", type=Path, default=None, help="default: /tmp/skinsense_kind_routing_<version>.npz")
    parser.add_argument("--max-phone-to-dermoscopy", type=float, default=MAX_PHONE_TO_DERMOSCOPY)
    parser.add_argument("--max-dermoscopy-to-phone", type=float, default=MAX_DERMOSCOPY_TO_PHONE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = resolve_data_dir(args.data_dir)
    classifier = Classifier(args.artifact_dir, threads=1)
    cache = args.cache or Path(f"/tmp/skinsense_kind_routing_{classifier.version}.npz")
    data = load_or_build(classifier, data_dir, resolve_phone_data_root(args.phone_data_dir), cache)
    targets = (args.max_phone_to_dermoscopy, args.max_dermoscopy_to_phone)
    nested = nested_routing(data, OUTER_FOLDS, INNER_FOLDS, *targets)
    phone = phone_validation_samples(resolve_phone_data_root(args.phone_data_dir), args.artifact_dir)
    print(json.dumps(report(classifier, data, nested, args.artifact_dir, *targets, phone_samples=phone), indent=2))


if __name__ == "__main__":
    main()
