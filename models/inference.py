"""The inference library the workers use: load the shipped artifact once, classify photos warm.

TensorFlow is imported only when the Keras runtime is chosen; the default LiteRT runtime needs
``ai-edge-litert`` alone.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

from models.metrics import softmax
from models.policy import assess_risk
from models.preprocessing import INPUT_SIZE, prepare_image, to_model_input
from shared.labels import CLASS_CODES, CLASS_NAMES, MELANOMA_INDEX, RiskLevel

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifact"
METADATA_FILE = "metadata.json"
Runtime = Literal["litert", "keras"]
RUNTIMES: tuple[Runtime, ...] = ("litert", "keras")


# Test-time views of a batch (N, H, W, C). A lesion has no canonical orientation, so the model's
# logits can be averaged over flips; which views the artifact uses is in its metadata.
VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda batch: batch,
    "flip_left_right": lambda batch: np.ascontiguousarray(batch[:, :, ::-1]),
    "flip_up_down": lambda batch: np.ascontiguousarray(batch[:, ::-1]),
    "rotate_180": lambda batch: np.ascontiguousarray(batch[:, ::-1, ::-1]),
}


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
    melanoma_probability: float
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranking": [{"code": c.code, "name": c.name, "probability": round(c.probability, 6)} for c in self.ranking],
            "risk": self.risk.value,
            "melanoma_alert": self.melanoma_alert,
            "model_version": self.model_version,
        }


def artifact_version(artifact_dir: Path, model_files: Sequence[str]) -> str:
    """Content hash of the model files: SHA-256 over each file's name and bytes, first 16 hex digits."""
    digest = hashlib.sha256()
    for name in sorted(model_files):
        digest.update(name.encode())
        digest.update((artifact_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def read_metadata(artifact_dir: Path = ARTIFACT_DIR) -> dict[str, Any]:
    metadata: dict[str, Any] = json.loads((artifact_dir / METADATA_FILE).read_text())
    return metadata


class LogitsRuntime(Protocol):
    def logits(self, batch: np.ndarray) -> np.ndarray: ...


class LiteRTRuntime:
    """One interpreter per process; the lock makes it safe to share between threads."""

    def __init__(self, model_path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._lock = threading.Lock()

    def logits(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        with self._lock:
            for image in batch:
                self._interpreter.set_tensor(self._input, image[None])
                self._interpreter.invoke()
                outputs.append(self._interpreter.get_tensor(self._output)[0].copy())
        return np.stack(outputs) if outputs else np.zeros((0, len(CLASS_CODES)), np.float32)


class KerasRuntime:
    def __init__(self, model_path: Path) -> None:
        import keras

        self._model = keras.saving.load_model(model_path, compile=False)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, len(CLASS_CODES)), np.float32)
        return np.asarray(self._model.predict_on_batch(batch))


class Classifier:
    """Loads the artifact once; ``classify_images`` is the call the workers and the CLI make."""

    def __init__(self, artifact_dir: Path = ARTIFACT_DIR, runtime: Runtime | None = None, threads: int = 1):
        self.metadata = read_metadata(artifact_dir)
        self.version: str = self.metadata["version"]
        self.temperature: float = float(self.metadata["temperature"])
        self.melanoma_alert_threshold: float = float(self.metadata["melanoma_alert_threshold"])
        if tuple(self.metadata["class_codes"]) != CLASS_CODES or self.metadata["input_size"] != INPUT_SIZE:
            raise ValueError(f"{artifact_dir}: artifact classes or input size do not match this code")
        self.views: tuple[str, ...] = tuple(self.metadata.get("test_time_views", ["identity"]))
        self.runtime_name: Runtime = runtime or self.metadata["default_runtime"]
        model_path = artifact_dir / self.metadata["files"][self.runtime_name]
        self._runtime: LogitsRuntime
        if self.runtime_name == "litert":
            self._runtime = LiteRTRuntime(model_path, threads)
        elif self.runtime_name == "keras":
            self._runtime = KerasRuntime(model_path)
        else:
            raise ValueError(f"unknown runtime {self.runtime_name!r}; choose one of {RUNTIMES}")

    def logits(self, prepared: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Model logits, averaged over the artifact's test-time views of each image."""
        batch = to_model_input(prepared)
        return np.mean([self._runtime.logits(VIEWS[name](batch)) for name in self.views], axis=0)

    def probabilities(self, prepared: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        return softmax(self.logits(prepared), self.temperature)

    def classify_prepared(self, prepared: Sequence[np.ndarray] | np.ndarray) -> list[Prediction]:
        return [self._prediction(p) for p in self.probabilities(prepared)]

    def classify_images(self, images: Sequence[Image.Image]) -> list[Prediction]:
        return self.classify_prepared([prepare_image(image) for image in images])

    def _prediction(self, probabilities: np.ndarray) -> Prediction:
        order = np.argsort(-probabilities, kind="stable")
        ranking = [RankedClass(CLASS_CODES[i], CLASS_NAMES[CLASS_CODES[i]], float(probabilities[i])) for i in order]
        assessment = assess_risk(probabilities, self.melanoma_alert_threshold)
        return Prediction(
            ranking=ranking,
            risk=assessment.risk,
            melanoma_alert=assessment.melanoma_alert,
            melanoma_probability=float(probabilities[MELANOMA_INDEX]),
            model_version=self.version,
        )
