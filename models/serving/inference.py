"""The inference library the workers use: load the shipped artifact once, screen and classify photos warm.

The artifact holds a network per photo kind and a shared picture head:
- ``features``: the frozen ImageNet MobileNetV3-Small, cut at its 1024-wide embedding; the *picture head*
  (a logistic regression on that embedding) tells a dermoscopic image, an ordinary (clinical) close-up, a
  picture that is not a lesion, and a lesion too small in the frame apart.
- per kind, a MobileNetV3-Small fine-tuned for that kind (dermoscopy: HAM10000; clinical: PAD-UFES-20's
  phone photos and lesion crops); its logits, averaged over the artifact's test-time views and calibrated
  with the kind's temperature, rank the 7 classes.

TensorFlow is imported only when the Keras runtime is chosen; the default LiteRT runtime needs
``ai-edge-litert`` alone.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image
from pydantic import BaseModel, model_validator

from models.serving.decision import OtherKindResult, decide
from models.serving.explanation_head import ExplanationHead
from models.serving.metrics import softmax
from models.serving.policy import HIGH_MALIGNANT_PROBABILITY, KindPolicy
from models.serving.preprocessing import INPUT_SIZE, prepare_image, to_model_input
from models.serving.skin_tone import SkinTone, estimate_skin_tone
from models.serving.triage import TriageModel
from shared.answers import AnswerEffect, PatientAnswers
from shared.labels import CLASS_CODES, CLASS_NAMES, MELANOMA_INDEX, MelanomaFinding, PhotoKind, RiskLevel, forwarded

ARTIFACT_DIR = Path(__file__).resolve().parents[1] / "artifact"
METADATA_FILE = "metadata.json"
Runtime = Literal["litert", "keras"]
RUNTIMES: tuple[Runtime, ...] = ("litert", "keras")
# What the picture head tells apart, in the order of its outputs.
PICTURE_CLASSES: tuple[str, ...] = ("dermoscopic", "clinical", "not_a_lesion", "lesion_too_small", "blurry")
# The picture classes that refuse a photo; each is also the refusal's stable code.
REFUSING_PICTURES: tuple[str, ...] = ("not_a_lesion", "lesion_too_small", "blurry")


# Test-time views of a batch (N, H, W, C). A lesion has no canonical orientation, so the model's
# logits can be averaged over flips; which views the artifact uses is in its metadata.
VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda batch: batch,
    "flip_left_right": lambda batch: np.ascontiguousarray(batch[:, :, ::-1]),
    "flip_up_down": lambda batch: np.ascontiguousarray(batch[:, ::-1]),
    "rotate_180": lambda batch: np.ascontiguousarray(batch[:, ::-1, ::-1]),
}


class KindSettings(BaseModel):
    """The network, calibration and policy of one photo kind, fitted on that kind's validation photos."""

    network_files: dict[Runtime, str]
    temperature: float
    melanoma_alert_threshold: float
    low_risk_below: float  # calibrated malignant probability under which a benign-looking photo is LOW
    high_malignant_at: float = HIGH_MALIGNANT_PROBABILITY  # malignant probability forwarded as HIGH
    min_sharpness: float  # models.serving.quality sharpness under which the photo is refused as blurred
    # Measured on this kind's validation photos (cross-fitted where the thresholds were fitted on them):
    # of 100 malignant or pre-malignant lesions, how many this model tells LOW risk. Patients read it.
    malignant_told_low_per_100: float


class GateSettings(BaseModel):
    min_brightness: float
    max_brightness: float
    max_saturated_share: float
    refusal_probability: float  # picture-head probability of a refusing picture class that refuses
    # The photo's kind from the picture head's dermoscopic share, p(dermoscopic) / (p(dermoscopic) + p(clinical)),
    # chosen by nested patient-grouped cross-validation (models/training/kind_routing.py): at or above
    # ``dermoscopic_share_at_least`` the dermoscopy network alone, under ``clinical_share_under`` the phone
    # network alone, in between both networks (models/serving/screening.py).
    clinical_share_under: float
    dermoscopic_share_at_least: float

    @model_validator(mode="after")
    def _kind_band_in_order(self) -> GateSettings:
        if not 0.0 <= self.clinical_share_under <= self.dermoscopic_share_at_least <= 1.0:
            raise ValueError("need 0 <= clinical_share_under <= dermoscopic_share_at_least <= 1")
        return self


class ArtifactMetadata(BaseModel):
    version: str
    architecture: str
    class_codes: list[str]
    class_names: list[str]
    input_size: int
    preprocessing: str
    features_files: dict[Runtime, str]
    heads_file: str
    triage_file: str | None = None  # models/serving/triage.py's weights; None: answers cannot change a result
    # models/serving/explanation_head.py's head weights; the kinds' networks then also output their last feature map
    explanation_file: str | None = None
    default_runtime: Runtime
    test_time_views: list[str]
    kinds: dict[PhotoKind, KindSettings]
    gates: GateSettings
    picture_classes: list[str]
    training: dict[str, Any]

    def model_files(self) -> list[str]:
        networks = {name for kind in self.kinds.values() for name in kind.network_files.values()}
        extra = [name for name in (self.triage_file, self.explanation_file) if name]
        return sorted({*networks, *self.features_files.values(), self.heads_file, *extra})


@dataclass(frozen=True)
class RankedClass:
    code: str
    name: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    ranking: list[RankedClass]  # all seven classes, most probable first; probabilities sum to 1
    risk: RiskLevel
    melanoma_alert: bool
    melanoma_finding: MelanomaFinding
    melanoma_probability: float
    malignant_probability: float
    photo_kind: PhotoKind  # the network whose result this is (models/serving/screening.py routes the photo)
    model_version: str
    answers_used: list[str]  # the patient's answers that went into this result (empty: photo only)
    # Which answers raised or lowered this result (models/serving/decision.py); stored with it, never in to_dict.
    answer_effects: dict[str, AnswerEffect] = field(default_factory=dict)
    raised_by_change: bool = False  # the spot changed since its earlier photo (models/serving/decision.py)
    # The skin around the lesion (models/serving/skin_tone.py; None: too little skin to tell), and whether it being
    # outside the tones SkinSense was measured on turned LOW into MEDIUM (models/serving/decision.py).
    skin_tone: SkinTone | None = None
    raised_by_skin_tone: bool = False
    # The picture head was unsure of the kind: both kinds' networks ran; this is the more likely kind's reading,
    # its risk never under the other network's (models/serving/decision.py OtherKindResult).
    other_kind: OtherKindResult | None = None
    raised_by_other_kind: bool = False

    @property
    def photo_kind_uncertain(self) -> bool:
        return self.other_kind is not None

    # The kind network's last feature map of the photo (the identity view), kept from the analysis so that the
    # explanation picture needs no second run of the network; never stored (not in ``to_dict``).
    feature_map: np.ndarray | None = field(default=None, repr=False, compare=False)

    def class_probabilities(self) -> np.ndarray:
        """The ranking's probabilities in CLASS_CODES order."""
        by_code = {ranked.code: ranked.probability for ranked in self.ranking}
        return np.array([by_code[code] for code in CLASS_CODES])

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranking": [{"code": c.code, "name": c.name, "probability": round(c.probability, 6)} for c in self.ranking],
            "risk": self.risk.value,
            "forwarded": forwarded(self.risk),  # to the clinicians, as the bot does
            "melanoma_alert": self.melanoma_alert,
            "melanoma_finding": self.melanoma_finding.value,
            "photo_kind": self.photo_kind.value,
            "photo_kind_uncertain": self.photo_kind_uncertain,
            "other_kind": None if self.other_kind is None else self.other_kind.to_dict(),
            "raised_by_other_kind": self.raised_by_other_kind,
            "answers_used": self.answers_used,
            "skin_tone": None if self.skin_tone is None else self.skin_tone.to_dict(),
            "raised_by_skin_tone": self.raised_by_skin_tone,
            "model_version": self.model_version,
        }


def artifact_version(artifact_dir: Path, model_files: Sequence[str]) -> str:
    """Content hash of the model files: SHA-256 over each file's name and bytes, first 16 hex digits."""
    digest = hashlib.sha256()
    for name in sorted(model_files):
        digest.update(name.encode())
        digest.update((artifact_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def read_metadata(artifact_dir: Path = ARTIFACT_DIR) -> ArtifactMetadata:
    return ArtifactMetadata.model_validate(json.loads((artifact_dir / METADATA_FILE).read_text()))


class NetworkRuntime(Protocol):
    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first output (logits, or the embedding) of each image in the batch."""
        ...

    def run_with_feature_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Each image's logits and last feature map, in one run; None for the maps where the network has no
        such output (only networks exported by models/serving/explanation_head.py have it)."""
        ...


class LiteRTNetwork:
    """One interpreter per process; the lock makes it safe to share between threads."""

    def __init__(self, model_path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        # By rank, not position: the converter orders outputs by name. Rank 2: logits or embedding;
        # rank 4: the feature map that models/serving/explanation_head.py exports beside the logits.
        outputs = {len(detail["shape"]): detail for detail in self._interpreter.get_output_details()}
        self._output, self._output_size = outputs[2]["index"], int(outputs[2]["shape"][-1])
        self._feature_map = outputs[4]["index"] if 4 in outputs else None
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        with self._lock:
            for image in batch:
                self._interpreter.set_tensor(self._input, image[None])
                self._interpreter.invoke()
                outputs.append(self._interpreter.get_tensor(self._output)[0].copy())
        return np.stack(outputs) if outputs else np.zeros((0, self._output_size), np.float32)

    def run_with_feature_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self._feature_map is None:
            return self.run(batch), None
        logits, maps = [], []
        with self._lock:
            for image in batch:
                self._interpreter.set_tensor(self._input, image[None])
                self._interpreter.invoke()
                logits.append(self._interpreter.get_tensor(self._output)[0].copy())
                maps.append(self._interpreter.get_tensor(self._feature_map)[0].copy())
        return np.stack(logits), np.stack(maps)


class KerasNetwork:
    def __init__(self, model_path: Path) -> None:
        import keras

        self._model = keras.saving.load_model(model_path, compile=False)

    def run(self, batch: np.ndarray) -> np.ndarray:
        outputs = self._model.predict_on_batch(batch)
        first = outputs[0] if isinstance(outputs, list | tuple) else outputs
        return np.asarray(first, dtype=np.float32)

    def run_with_feature_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self._model.predict_on_batch(batch)
        if not isinstance(outputs, list | tuple) or len(outputs) < 2:
            return np.asarray(outputs, dtype=np.float32), None
        return np.asarray(outputs[0], np.float32), np.asarray(outputs[1], np.float32)


def _load_network(path: Path, runtime: Runtime, threads: int) -> NetworkRuntime:
    if runtime == "litert":
        return LiteRTNetwork(path, threads)
    if runtime == "keras":
        return KerasNetwork(path)
    raise ValueError(f"unknown runtime {runtime!r}; choose one of {RUNTIMES}")


@dataclass(frozen=True)
class EmbeddingHead:
    """Multinomial logistic regression on the standardised ImageNet embedding."""

    mean: np.ndarray
    scale: np.ndarray
    coefficients: np.ndarray  # (classes, 1024)
    intercepts: np.ndarray  # (classes,)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        scores = ((embeddings - self.mean) / self.scale) @ self.coefficients.T + self.intercepts
        return softmax(scores)

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        return {
            f"{name}_mean": self.mean,
            f"{name}_scale": self.scale,
            f"{name}_coefficients": self.coefficients,
            f"{name}_intercepts": self.intercepts,
        }

    @classmethod
    def load(cls, path: Path, name: str) -> EmbeddingHead:
        with np.load(path) as arrays:
            return cls(*(arrays[f"{name}_{part}"] for part in ("mean", "scale", "coefficients", "intercepts")))


# The two heads in heads.npz: what the picture is, and the phone-photo lesion head.
PICTURE_HEAD, PHONE_HEAD = "picture", "phone"
PROBABILITY_FLOOR = 1e-6  # a class a head never saw (df and vasc on phone photos) keeps this probability


def blend_logits(network_logits: np.ndarray, head_probabilities: np.ndarray) -> np.ndarray:
    """The phone photos' logits: the phone network and the embedding head, averaged with equal weights as
    log-probabilities (measured better than either alone: see the model card)."""
    return np.asarray(0.5 * network_logits + 0.5 * np.log(np.maximum(head_probabilities, PROBABILITY_FLOOR)))


class Classifier:
    """Loads the artifact once; the worker and ``skinsense classify`` call it through models.serving.screening."""

    def __init__(self, artifact_dir: Path = ARTIFACT_DIR, runtime: Runtime | None = None, threads: int = 1):
        self.metadata = read_metadata(artifact_dir)
        self.version = self.metadata.version
        if tuple(self.metadata.class_codes) != CLASS_CODES or self.metadata.input_size != INPUT_SIZE:
            raise ValueError(f"{artifact_dir}: artifact classes or input size do not match this code")
        if tuple(self.metadata.picture_classes) != PICTURE_CLASSES:
            raise ValueError(f"{artifact_dir}: picture classes do not match this code")
        self.views: tuple[str, ...] = tuple(self.metadata.test_time_views)
        self.runtime_name: Runtime = runtime or self.metadata.default_runtime
        loaded: dict[str, NetworkRuntime] = {}

        def network(files: dict[Runtime, str]) -> NetworkRuntime:
            name = files[self.runtime_name]
            if name not in loaded:  # kinds may share a network: load it once
                loaded[name] = _load_network(artifact_dir / name, self.runtime_name, threads)
            return loaded[name]

        self._features = network(self.metadata.features_files)
        self._networks = {kind: network(settings.network_files) for kind, settings in self.metadata.kinds.items()}
        self.picture_head = EmbeddingHead.load(artifact_dir / self.metadata.heads_file, PICTURE_HEAD)
        self.phone_head = EmbeddingHead.load(artifact_dir / self.metadata.heads_file, PHONE_HEAD)
        triage_file = self.metadata.triage_file
        self.triage = TriageModel.load(artifact_dir / triage_file) if triage_file else None
        explanation_file = self.metadata.explanation_file
        self.explanation_heads = (
            {kind: ExplanationHead.load(artifact_dir / explanation_file, kind.value) for kind in self._networks}
            if explanation_file
            else {}
        )

    def embeddings(self, prepared: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """ImageNet embeddings (N, 1024) of prepared images."""
        return self._features.run(to_model_input(prepared))

    def picture_probabilities(self, prepared: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, 5) probabilities over PICTURE_CLASSES."""
        return self.picture_head.probabilities(self.embeddings(prepared))

    def network_logits(self, prepared: Sequence[np.ndarray] | np.ndarray, kind: PhotoKind) -> np.ndarray:
        """Logits of the kind's network, averaged over the artifact's test-time views of each image."""
        return self.network_outputs(prepared, kind)[0]

    def network_outputs(
        self, prepared: Sequence[np.ndarray] | np.ndarray, kind: PhotoKind
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``network_logits``, and the identity view's last feature maps from the same run (None where the
        network has none or the artifact takes no identity view): what the explanation picture draws."""
        batch = to_model_input(prepared)
        network = self._networks[kind]
        view_logits, feature_maps = [], None
        for name in self.views:
            if name == "identity":
                logits, feature_maps = network.run_with_feature_maps(batch)
            else:
                logits = network.run(VIEWS[name](batch))
            view_logits.append(logits)
        return np.asarray(np.mean(view_logits, axis=0)), feature_maps

    def feature_map(self, prepared: np.ndarray, kind: PhotoKind) -> np.ndarray:
        """One prepared image's last feature map in the kind's network (models/serving/explanation_head.py)."""
        _, feature_maps = self._networks[kind].run_with_feature_maps(to_model_input(prepared))
        if feature_maps is None:
            raise ValueError(f"artifact {self.version}: the {kind} network has no feature-map output")
        return np.asarray(feature_maps[0])

    def activation_map(self, prepared: np.ndarray, kind: PhotoKind, class_index: int) -> np.ndarray:
        """Where in one prepared image the kind's network found what raises ``class_index``
        (models/serving/explanation_head.py): a (7, 7) map in [0, 1], on the photo as the network saw it (the
        identity view)."""
        return self.activation_map_of(self.feature_map(prepared, kind), kind, class_index)

    def activation_map_of(self, feature_map: np.ndarray, kind: PhotoKind, class_index: int) -> np.ndarray:
        """``activation_map`` from the image's feature map, where the analysis kept it (``Prediction.feature_map``)."""
        if kind not in self.explanation_heads:
            raise ValueError(f"artifact {self.version} ships no explanation head for {kind} photos")
        return self.explanation_heads[kind].activation_map(feature_map, class_index)

    def logits(
        self, prepared: Sequence[np.ndarray] | np.ndarray, kind: PhotoKind, embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """Lesion logits of photos of one kind (before the kind's temperature). Phone photos blend their
        network with the phone head on the ImageNet embedding (computed here unless the gates already did)."""
        return self.lesion_outputs(prepared, kind, embeddings)[0]

    def lesion_outputs(
        self, prepared: Sequence[np.ndarray] | np.ndarray, kind: PhotoKind, embeddings: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``logits``, and the network's feature maps from the same run (``network_outputs``)."""
        logits, feature_maps = self.network_outputs(prepared, kind)
        if kind != PhotoKind.CLINICAL:
            return logits, feature_maps
        embeddings = self.embeddings(prepared) if embeddings is None else embeddings
        return blend_logits(logits, self.phone_head.probabilities(embeddings)), feature_maps

    def probabilities(self, logits: np.ndarray, kinds: Sequence[PhotoKind]) -> np.ndarray:
        temperatures = np.array([self.metadata.kinds[kind].temperature for kind in kinds])[:, None]
        return softmax(logits / temperatures)

    def classify_prepared(
        self,
        prepared: Sequence[np.ndarray] | np.ndarray,
        kinds: Sequence[PhotoKind],
        answers: Sequence[PatientAnswers | None] | None = None,
        embeddings: np.ndarray | None = None,
    ) -> list[Prediction]:
        """Predictions for prepared images of known kinds (the gates have already passed them), each with the skin
        tone around its lesion."""
        images = to_model_input(prepared)
        predictions: list[Prediction | None] = [None] * len(images)
        for kind in set(kinds):
            chosen = [i for i, k in enumerate(kinds) if k == kind]
            chosen_embeddings = embeddings[chosen] if embeddings is not None else None
            logits, feature_maps = self.lesion_outputs(images[chosen], kind, chosen_embeddings)
            probabilities = self.probabilities(logits, [kind] * len(chosen))
            for number, (index, row) in enumerate(zip(chosen, probabilities, strict=True)):
                skin_tone = estimate_skin_tone(np.asarray(prepared[index]), kind)
                prediction = self.prediction(row, kind, answers[index] if answers else None, skin_tone=skin_tone)
                feature_map = None if feature_maps is None else feature_maps[number]
                predictions[index] = replace(prediction, feature_map=feature_map)
        return [p for p in predictions if p is not None]

    def classify_images(self, images: Sequence[Image.Image], kinds: Sequence[PhotoKind]) -> list[Prediction]:
        return self.classify_prepared([prepare_image(image) for image in images], kinds)

    def kind_policy(self, kind: PhotoKind) -> KindPolicy:
        settings = self.metadata.kinds[kind]
        return KindPolicy(settings.melanoma_alert_threshold, settings.low_risk_below, settings.high_malignant_at)

    def prediction(
        self,
        photo_probabilities: np.ndarray,
        kind: PhotoKind,
        answers: PatientAnswers | None = None,
        *,
        spot_changed: bool = False,
        skin_tone: SkinTone | None = None,
        other_kind: OtherKindResult | None = None,
    ) -> Prediction:
        """The result of one photo from its calibrated photo-only probabilities and, where given, the answers
        (and whether the spot changed since its earlier photo, the skin tone around the lesion, and what the other
        kind's network found where the kind was uncertain).

        Unknown answers change nothing: with none known this is exactly the photo-only result.
        """
        policy = self.kind_policy(kind)
        decision = decide(
            photo_probabilities,
            kind,
            answers,
            policy,
            self.triage,
            spot_changed=spot_changed,
            skin_tone=skin_tone,
            other_kind=other_kind,
        )
        probabilities, assessment = decision.probabilities, decision.assessment
        order = np.argsort(-probabilities, kind="stable")
        ranking = [RankedClass(CLASS_CODES[i], CLASS_NAMES[CLASS_CODES[i]], float(probabilities[i])) for i in order]
        return Prediction(
            ranking=ranking,
            risk=assessment.risk,
            melanoma_alert=assessment.melanoma_finding != MelanomaFinding.NONE,
            melanoma_finding=assessment.melanoma_finding,
            melanoma_probability=float(probabilities[MELANOMA_INDEX]),
            malignant_probability=assessment.malignant_probability,
            photo_kind=kind,
            model_version=self.version,
            answers_used=decision.answers_used,
            answer_effects=decision.answer_effects,
            raised_by_change=decision.raised_by_change,
            skin_tone=skin_tone,
            raised_by_skin_tone=decision.raised_by_skin_tone,
            other_kind=other_kind,
            raised_by_other_kind=decision.raised_by_other_kind,
        )

    def prediction_from_ranking(
        self,
        ranking: Sequence[dict[str, Any]],
        kind: PhotoKind,
        answers: PatientAnswers | None,
        *,
        spot_changed: bool = False,
        skin_tone_ita: float | None = None,
        other_kind: OtherKindResult | None = None,
    ) -> Prediction:
        """Recompute a stored photo-only result (``Prediction.to_dict()['ranking']``) with the answers
        (``skin_tone_ita``: the skin tone stored with it, ``to_dict()['skin_tone']['ita']``; ``other_kind``: the
        other kind's result stored with it)."""
        by_code = {entry["code"]: float(entry["probability"]) for entry in ranking}
        probabilities = np.array([by_code[code] for code in CLASS_CODES])
        skin_tone = None if skin_tone_ita is None else SkinTone(skin_tone_ita, kind)
        return self.prediction(
            probabilities / probabilities.sum(),
            kind,
            answers,
            spot_changed=spot_changed,
            skin_tone=skin_tone,
            other_kind=other_kind,
        )
