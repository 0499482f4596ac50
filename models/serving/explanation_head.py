"""The layers after the served network's last feature map, as numpy: what the explanation picture needs to
find where the network saw each class (models/serving/explain.py), without TensorFlow.

Each kind's served network outputs, besides its logits, its last feature map (7x7x576 per member; an ensemble
concatenates its members' maps along the channels). After that map a MobileNetV3 head pools it, applies a
1x1 convolution to 1024 channels with hard-swish, and a dense layer to the 7 logits. The pooling is linear, so
the gradient of a class logit with respect to the map is the same at every position:
``w_c = K2 @ (hard_swish'(z) * Kd[:, c])`` with ``z`` the pre-activation at the pooled point. The map
``relu(F(x, y) . w_c)`` (Grad-CAM, which here needs no backpropagation: only the head's weights, shipped in
the artifact as ``explanation.npz``) shows where the features that raise class ``c`` are; members average.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXPLANATION_FILE = "explanation.npz"
PRE_LOGITS_LAYER = "conv_2"  # Keras' MobileNetV3: the layer before it pools the last feature map
LOGITS_LAYER = "lesion_logits"


@dataclass(frozen=True)
class ExplanationHead:
    """The layers after the last feature map, per member of one kind's network."""

    pre_logits_kernels: np.ndarray  # (members, channels, 1024)
    pre_logits_biases: np.ndarray  # (members, 1024)
    logits_kernels: np.ndarray  # (members, 1024, classes)
    logits_biases: np.ndarray  # (members, classes)

    @property
    def members(self) -> int:
        return int(self.pre_logits_kernels.shape[0])

    def _split(self, feature_maps: np.ndarray) -> list[np.ndarray]:
        """One (h, w, channels) map per member, from the network's concatenated (h, w, members*channels)."""
        return np.split(np.asarray(feature_maps, dtype=np.float32), self.members, axis=-1)

    def _pre_activation(self, member: int, feature_map: np.ndarray) -> np.ndarray:
        pooled = feature_map.mean(axis=(0, 1))
        return np.asarray(pooled @ self.pre_logits_kernels[member] + self.pre_logits_biases[member])

    def logits(self, feature_maps: np.ndarray) -> np.ndarray:
        """The network's logits recomputed from its feature map (checks that the head is the served one)."""
        member_logits = [
            _hard_swish(self._pre_activation(m, f)) @ self.logits_kernels[m] + self.logits_biases[m]
            for m, f in enumerate(self._split(feature_maps))
        ]
        return np.asarray(np.mean(member_logits, axis=0))

    def activation_map(self, feature_maps: np.ndarray, class_index: int) -> np.ndarray:
        """(h, w) map in [0, 1] of where the features raising ``class_index`` are (0 everywhere if none)."""
        maps = []
        for m, feature_map in enumerate(self._split(feature_maps)):
            slope = _hard_swish_slope(self._pre_activation(m, feature_map))
            weights = self.pre_logits_kernels[m] @ (slope * self.logits_kernels[m][:, class_index])
            maps.append(feature_map @ weights)
        activation = np.maximum(np.mean(maps, axis=0), 0.0)
        peak = float(activation.max())
        return np.asarray(activation / peak if peak > 0 else activation)

    def arrays(self, kind: str) -> dict[str, np.ndarray]:
        return {
            f"{kind}_pre_logits_kernels": self.pre_logits_kernels,
            f"{kind}_pre_logits_biases": self.pre_logits_biases,
            f"{kind}_logits_kernels": self.logits_kernels,
            f"{kind}_logits_biases": self.logits_biases,
        }

    @classmethod
    def load(cls, path: Path, kind: str) -> ExplanationHead:
        with np.load(path) as arrays:
            parts = ("pre_logits_kernels", "pre_logits_biases", "logits_kernels", "logits_biases")
            return cls(*(arrays[f"{kind}_{part}"].astype(np.float32) for part in parts))


def _hard_swish(x: np.ndarray) -> np.ndarray:
    return np.asarray(x * np.clip(x + 3.0, 0.0, 6.0) / 6.0)


def _hard_swish_slope(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.where(x < -3.0, 0.0, np.where(x > 3.0, 1.0, (2.0 * x + 3.0) / 6.0)))
