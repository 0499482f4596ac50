"""Which network a photo goes to (models/serving/screening.py): a clearly phone photo to the phone network alone, a
clearly dermoscopic one to the dermoscopy network alone, and one in between to both: read by the likelier kind's
network, its risk never under the other's.
Real artifact, real photos; for the band, a copy of the classifier whose band takes every photo (same networks,
heads and policy), so that photos on which the two networks disagree can be found among a few."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.serving.decision import OtherKindResult
from models.serving.inference import Classifier, GateSettings, Prediction
from models.serving.policy import RISK_ORDER
from models.serving.preprocessing import prepare_image
from models.serving.screening import KindRoute, dermoscopic_share, gate_prepared, route_kind, screen_photo
from models.training.data import image_path
from models.training.kind_routing import choose_band
from models.training.pad_ufes import PhoneSample
from models.training.validation_data import validation_samples
from shared.answers import PatientAnswers
from shared.images import UnreadableImage
from shared.labels import PhotoKind, RiskLevel


def photo_files(data_dir: Path, phone_samples: list[PhoneSample]) -> Iterator[Path]:
    """Phone photos and dermoscopy photos, alternating, spread over both data sets."""
    phone = [s.path for s in phone_samples if not s.is_crop][::7]
    dermoscopy = [image_path(data_dir, s) for s in validation_samples(data_dir)[::37]]
    for pair in zip(phone, dermoscopy, strict=False):
        yield from pair


def share_of(path: Path, classifier: Classifier) -> float:
    with Image.open(path) as image:
        return float(dermoscopic_share(classifier.picture_probabilities([prepare_image(image)]))[0])


def both_networks(path: Path, classifier: Classifier) -> dict[PhotoKind, Prediction]:
    with Image.open(path) as image:
        prepared = prepare_image(image)
    kinds = list(PhotoKind)
    return dict(zip(kinds, classifier.classify_prepared([prepared] * len(kinds), kinds), strict=True))


def passes_gates(path: Path, classifier: Classifier) -> bool:
    try:
        with Image.open(path) as image:
            gate_prepared(prepare_image(image), classifier)
    except UnreadableImage:
        return False
    return True


@pytest.fixture(scope="module")
def undecided(classifier: Classifier) -> Classifier:
    """The shipped classifier with a band that takes every photo (a shallow copy: the same loaded networks)."""
    widened = copy.copy(classifier)
    everything = {"clinical_share_under": 0.0, "dermoscopic_share_at_least": 1.0}
    gates = classifier.metadata.gates.model_copy(update=everything)
    widened.metadata = classifier.metadata.model_copy(update={"gates": gates})
    return widened


def test_the_band_routes_by_the_dermoscopic_share(classifier: Classifier) -> None:
    gates = classifier.metadata.gates
    low, high = gates.clinical_share_under, gates.dermoscopic_share_at_least
    assert 0.0 < low < high < 1.0, "the artifact ships a band of uncertain photos"
    assert route_kind(low / 2, gates).kind == PhotoKind.CLINICAL and not route_kind(low / 2, gates).uncertain
    assert route_kind(high, gates).kind == PhotoKind.DERMOSCOPIC and not route_kind(high, gates).uncertain
    for share in (low, (low + high) / 2, np.nextafter(high, 0.0)):
        route = route_kind(float(share), gates)
        assert route.uncertain and route.kind == (PhotoKind.DERMOSCOPIC if share >= 0.5 else PhotoKind.CLINICAL)


def test_a_reversed_band_is_refused() -> None:
    with pytest.raises(ValueError, match="clinical_share_under"):
        GateSettings(
            min_brightness=40,
            max_brightness=235,
            max_saturated_share=0.5,
            refusal_probability=0.35,
            clinical_share_under=0.9,
            dermoscopic_share_at_least=0.5,
        )


@pytest.mark.parametrize("kind", list(PhotoKind))
def test_a_photo_clearly_of_one_kind_goes_to_that_network_alone(
    kind: PhotoKind, classifier: Classifier, data_dir: Path, phone_samples: list[PhoneSample]
) -> None:
    gates, clearly = classifier.metadata.gates, KindRoute(kind, uncertain=False)
    clear = next(
        path
        for path in photo_files(data_dir, phone_samples)
        if route_kind(share_of(path, classifier), gates) == clearly and passes_gates(path, classifier)
    )
    served = screen_photo(clear.read_bytes(), classifier)
    assert served.photo_kind == kind and not served.photo_kind_uncertain
    assert served.to_dict() == {**both_networks(clear, classifier)[kind].to_dict(), "photo_kind_uncertain": False}


def test_an_uncertain_photo_is_read_by_the_likelier_kind_and_never_less_risky_than_the_other_finds(
    undecided: Classifier, data_dir: Path, phone_samples: list[PhoneSample]
) -> None:
    raised = kept = 0
    for path in photo_files(data_dir, phone_samples):
        if not passes_gates(path, undecided):
            continue
        served = screen_photo(path.read_bytes(), undecided)
        results = both_networks(path, undecided)
        assert served.photo_kind_uncertain and served.to_dict()["photo_kind_uncertain"] is True
        likely = PhotoKind.DERMOSCOPIC if share_of(path, undecided) >= 0.5 else PhotoKind.CLINICAL
        assert served.photo_kind == likely
        assert served.ranking == results[likely].ranking, "the likelier kind's reading of the classes"
        assert served.risk == max((r.risk for r in results.values()), key=RISK_ORDER.index)
        assert served.melanoma_alert == any(r.melanoma_alert for r in results.values())
        other = results[next(kind for kind in PhotoKind if kind != likely)]
        assert served.to_dict()["other_kind"] == {"risk": other.risk.value, "melanoma_alert": other.melanoma_alert}
        was_raised = (served.risk, served.melanoma_alert) != (results[likely].risk, results[likely].melanoma_alert)
        assert served.raised_by_other_kind == was_raised
        raised, kept = raised + was_raised, kept + (not was_raised)
        if raised and kept:
            return  # the other kind's risk raised one result and left another alone
    pytest.fail(f"among these photos {raised} were raised by the other kind and {kept} were not")


def test_the_worker_stores_an_uncertain_result_that_finalizes_to_the_same_risk(
    undecided: Classifier, data_dir: Path, phone_samples: list[PhoneSample]
) -> None:
    answers = PatientAnswers(age=64, grew=True, bleeds=False, itches=True)
    for path in list(photo_files(data_dir, phone_samples))[:8]:
        if not passes_gates(path, undecided):
            continue
        photo_only = screen_photo(path.read_bytes(), undecided)
        record = photo_only.to_dict()  # what the worker keeps of it: the ranking, the kind, the other kind's result
        stored, other = record["ranking"], record["other_kind"]
        other_kind = OtherKindResult(RiskLevel(other["risk"]), other["melanoma_alert"])
        again = undecided.prediction_from_ranking(
            stored,
            photo_only.photo_kind,
            None,
            other_kind=other_kind,
            skin_tone_ita=record["skin_tone"] and record["skin_tone"]["ita"],
        )
        assert (again.risk, again.melanoma_alert) == (photo_only.risk, photo_only.melanoma_alert)
        # `skinsense classify --answers` and the worker's finalize step combine the answers alike.
        with_answers = screen_photo(path.read_bytes(), undecided, answers).to_dict()
        skin_tone_ita = None if record["skin_tone"] is None else record["skin_tone"]["ita"]
        finalized = undecided.prediction_from_ranking(
            stored, photo_only.photo_kind, answers, other_kind=other_kind, skin_tone_ita=skin_tone_ita
        ).to_dict()
        assert {**with_answers, "ranking": None} == {**finalized, "ranking": None}
        # The stored ranking is rounded to 6 decimals: the same ranking, up to that.
        assert [c["code"] for c in with_answers["ranking"]] == [c["code"] for c in finalized["ranking"]]
        probabilities = [c["probability"] for c in finalized["ranking"]]
        assert [c["probability"] for c in with_answers["ranking"]] == pytest.approx(probabilities, abs=1e-5)


def test_the_band_lets_through_at_most_the_target_share_of_each_kind() -> None:
    rng = np.random.default_rng(0)
    phone = rng.beta(1, 6, 300)  # mostly low dermoscopic shares, with a tail
    dermoscopy = rng.beta(8, 1, 3000)
    band = choose_band(phone, dermoscopy, max_phone_to_dermoscopy=0.01, max_dermoscopy_to_phone=0.005)
    assert (phone >= band.dermoscopic_share_at_least).sum() == 3  # floor(1 % of 300)
    assert (dermoscopy < band.clinical_share_under).sum() == 15  # 0.5 % of 3000
    assert band.clinical_share_under <= band.dermoscopic_share_at_least
    # Kinds the head tells apart within the targets need no band: it closes, never reversed.
    apart = choose_band(0.3 * rng.beta(1, 6, 300), 0.7 + 0.3 * rng.beta(8, 1, 3000))
    assert apart.clinical_share_under == apart.dermoscopic_share_at_least
