"""Why the model said what it said: a class activation map of the served network, drawn over the photo.

Each kind's served network outputs, besides its logits, its last feature map (7x7x576 per member; an ensemble
concatenates its members' maps along the channels). After that map a MobileNetV3 head pools it, applies a
1x1 convolution to 1024 channels with hard-swish, and a dense layer to the 7 logits. The pooling is linear, so
the gradient of a class logit with respect to the map is the same at every position:
``w_c = K2 @ (hard_swish'(z) * Kd[:, c])`` with ``z`` the pre-activation at the pooled point. The map
``relu(F(x, y) . w_c)`` (Grad-CAM, which here needs no backpropagation: only the head's weights, shipped in
the artifact as ``explanation.npz``) shows where the features that raise class ``c`` are; members average.

``explanation_picture`` renders the photo with that heat map beside a bar chart of the probabilities, as a
JPEG for Telegram, in about 5 ms on one core from the feature map the analysis kept (`skinsense benchmark`,
its explanation column).
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from shared.labels import CLASS_CODES, EVERYDAY_NAMES, MALIGNANT_CODES, PhotoKind

if TYPE_CHECKING:
    from models.inference import Classifier

EXPLANATION_FILE = "explanation.npz"
POOLING_LAYER = "global_average_pooling2d"  # Keras' MobileNetV3: its input is the last feature map
PRE_LOGITS_LAYER = "conv_2"
LOGITS_LAYER = "lesion_logits"


# --- the head after the feature map ---------------------------------------------------------------------


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


# --- the picture ----------------------------------------------------------------------------------------

PANEL = 360  # pixels: the photo panel's longer side and the chart's height
CHART_WIDTH = 420
BACKGROUND = (255, 255, 255)
TEXT = (33, 33, 33)
BAR_BENIGN = (76, 140, 201)
BAR_MALIGNANT = (214, 92, 62)
# A perceptually ordered colour ramp (dark blue -> yellow), strongest regions warm.
HEAT_STOPS = np.array([[0, 0, 80], [40, 40, 200], [0, 180, 200], [120, 220, 60], [255, 230, 0], [255, 60, 0]], float)
HEAT_OPACITY = 0.45
SHOWN_CLASSES = 4  # at most; classes under MIN_SHOWN are left out ("0%" bars only confuse)
MIN_SHOWN = 0.01


def heat_colours(activation: np.ndarray) -> np.ndarray:
    """uint8 RGB colours of an activation map in [0, 1]."""
    positions = np.clip(activation, 0.0, 1.0) * (len(HEAT_STOPS) - 1)
    low = np.floor(positions).astype(int).clip(0, len(HEAT_STOPS) - 2)
    share = (positions - low)[..., None]
    return np.asarray(HEAT_STOPS[low] * (1 - share) + HEAT_STOPS[low + 1] * share, dtype=np.uint8)


# The ramp and the blend's opacity per activation level (256 levels): the picture is drawn by table look-ups.
HEAT_PALETTE = heat_colours(np.linspace(0.0, 1.0, 256))
HEAT_ALPHA = np.round(255 * HEAT_OPACITY * np.sqrt(np.linspace(0.0, 1.0, 256))).astype(np.uint8)


@lru_cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow's wheels have FreeType; a scalable font needs it
        raise RuntimeError("Pillow was built without FreeType: the explanation picture cannot draw its text")
    return font


def overlay_heat_map(photo: Image.Image, activation: np.ndarray) -> Image.Image:
    """The photo (fitted into PANEL x PANEL) with the activation map, stretched over the whole photo as the
    model saw it (resized without keeping the aspect), blended where it is strong (faint where weak, so the skin
    stays visible)."""
    shown = ImageOps.contain(photo.convert("RGB"), (PANEL, PANEL), Image.Resampling.BILINEAR)
    upsampled = Image.fromarray(activation.astype(np.float32), mode="F").resize(shown.size, Image.Resampling.BICUBIC)
    levels = np.round(np.clip(np.asarray(upsampled), 0.0, 1.0) * 255).astype(np.uint8)
    colours = Image.fromarray(HEAT_PALETTE[levels])
    return Image.composite(colours, shown, Image.fromarray(HEAT_ALPHA[levels]))


@lru_cache(maxsize=512)
def _text_stamp(text: str, size: int) -> tuple[Image.Image, tuple[int, int]]:
    """The text's glyph coverage (an "L" mask) and its offset from the drawing point: rendered once per process,
    since the chart's labels and percentages repeat (FreeType was most of the picture's cost)."""
    mask, offset = _font(size).getmask2(text, mode="L")
    return Image.frombytes("L", mask.size, bytes(mask)), offset


def _stamp_text(canvas: Image.Image, position: tuple[int, int], text: str, size: int) -> None:
    """Like ``ImageDraw.text(position, text, fill=TEXT, font=_font(size))``, from the cached stamp."""
    mask, (dx, dy) = _text_stamp(text, size)
    canvas.paste(
        TEXT, (position[0] + dx, position[1] + dy, position[0] + dx + mask.width, position[1] + dy + mask.height), mask
    )


@lru_cache(maxsize=1)
def _blank_chart() -> Image.Image:
    """The chart's fixed parts: background, title and the two lines at the foot."""
    chart = Image.new("RGB", (CHART_WIDTH, PANEL), BACKGROUND)
    _stamp_text(chart, (16, 14), "How likely each kind of spot is", 18)
    _stamp_text(chart, (16, PANEL - 50), "Warm colours on the photo: what weighed most.", 13)
    _stamp_text(chart, (16, PANEL - 30), "A screening aid, not a diagnosis.", 13)
    return chart


def probability_chart(ranking: Sequence[dict[str, Any]]) -> Image.Image:
    """Horizontal bars of the most likely classes (everyday names), malignant ones in a warm colour."""
    chart = _blank_chart().copy()
    draw = ImageDraw.Draw(chart)
    row_height = (PANEL - 90) // SHOWN_CLASSES
    bar_room = CHART_WIDTH - 32 - 56
    shown = [entry for entry in ranking[:SHOWN_CLASSES] if float(entry["probability"]) >= MIN_SHOWN] or ranking[:1]
    for row, entry in enumerate(shown):
        top = 56 + row * row_height
        code, probability = str(entry["code"]), float(entry["probability"])
        _stamp_text(chart, (16, top), EVERYDAY_NAMES.get(code, code), 15)
        colour = BAR_MALIGNANT if code in MALIGNANT_CODES else BAR_BENIGN
        width = max(round(bar_room * probability), 2)
        draw.rectangle((16, top + 24, 16 + width, top + 24 + 22), fill=colour)
        _stamp_text(chart, (16 + width + 8, top + 25), f"{probability:.0%}", 15)
    return chart


def render_explanation(photo: Image.Image, activation: np.ndarray, ranking: Sequence[dict[str, Any]]) -> bytes:
    """JPEG: the photo with its heat map on the left, the probability chart on the right."""
    left = overlay_heat_map(photo, activation)
    canvas = Image.new("RGB", (PANEL + CHART_WIDTH, PANEL), BACKGROUND)
    canvas.paste(left, ((PANEL - left.width) // 2, (PANEL - left.height) // 2))
    canvas.paste(probability_chart(ranking), (PANEL, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def explanation_picture(
    photo: bytes,
    classifier: Classifier,
    ranking: Sequence[dict[str, Any]],
    photo_kind: PhotoKind,
    feature_map: np.ndarray | None = None,
) -> bytes:
    """The explanation picture of one analysed photo: the heat map of the ranking's top class on the photo's
    kind of network, beside the ranking (the final one, answers included, as the patient reads it). With the
    photo's ``feature_map`` from its analysis (``Prediction.feature_map``) the network does not run again."""
    from models.preprocessing import prepare_image
    from shared.images import decode_image

    image = decode_image(photo)
    top_class = CLASS_CODES.index(str(ranking[0]["code"]))
    if feature_map is None:
        feature_map = classifier.feature_map(prepare_image(image), photo_kind)
    activation = classifier.activation_map_of(feature_map, photo_kind, top_class)
    return render_explanation(ImageOps.exif_transpose(image), activation, ranking)


# --- exporting the served networks with their feature map (training side, needs TensorFlow) --------------


def explainable_network(model: Any) -> tuple[Any, ExplanationHead]:
    """The served Keras network with a second output, its last feature map (members concatenated), and the
    head's weights. ``model``: one trained network, or models.package.average_models' ensemble."""
    import keras

    members = [layer for layer in model.layers if isinstance(layer, keras.Model)] or [model]
    image = keras.Input(model.input_shape[1:], name="image")
    logits, maps, heads = [], [], []
    for index, member in enumerate(members):
        feature_map = member.get_layer(POOLING_LAYER).input
        branch = keras.Model(member.inputs, [member.outputs[0], feature_map], name=f"member_{index}")
        member_logits, member_map = branch(image)
        logits.append(member_logits)
        maps.append(member_map)
        pre_kernel, pre_bias = member.get_layer(PRE_LOGITS_LAYER).get_weights()
        dense_kernel, dense_bias = member.get_layer(LOGITS_LAYER).get_weights()
        heads.append((pre_kernel.reshape(pre_kernel.shape[-2:]), pre_bias, dense_kernel, dense_bias))
    joined_logits = keras.layers.Average(name="mean_logits")(logits) if len(logits) > 1 else logits[0]
    joined_maps = keras.layers.Concatenate(name="feature_maps")(maps) if len(maps) > 1 else maps[0]
    network = keras.Model(image, [joined_logits, joined_maps], name=model.name)
    head = ExplanationHead(*(np.stack(parts).astype(np.float32) for parts in zip(*heads, strict=True)))
    return network, head


def export_explainable(artifact_dir: Path) -> None:
    """Re-export each kind's network with its feature map, write explanation.npz and the new version."""
    import keras

    from models.inference import artifact_version, read_metadata
    from models.package import export_network

    metadata = read_metadata(artifact_dir)
    arrays: dict[str, np.ndarray] = {}
    for kind, settings in metadata.kinds.items():
        model = keras.saving.load_model(artifact_dir / settings.network_files["keras"], compile=False)
        if len(model.outputs) > 1:
            model = keras.Model(model.inputs, model.outputs[0], name=model.name)  # already exported: redo
        network, head = explainable_network(model)
        export_network(network, artifact_dir, {runtime: name for runtime, name in settings.network_files.items()})
        arrays.update(head.arrays(kind.value))
    np.savez(artifact_dir / EXPLANATION_FILE, **arrays)  # type: ignore[arg-type]
    raw = json.loads((artifact_dir / "metadata.json").read_text())
    raw["explanation_file"] = EXPLANATION_FILE
    files = read_metadata_files(raw)
    raw["version"] = artifact_version(artifact_dir, files)
    (artifact_dir / "metadata.json").write_text(json.dumps(raw, indent=2) + "\n")
    print(f"exported explainable networks; artifact version {raw['version']}")
    del metadata


def read_metadata_files(raw: dict[str, Any]) -> list[str]:
    from models.inference import ArtifactMetadata

    return ArtifactMetadata.model_validate(raw).model_files()


def main(argv: list[str] | None = None) -> None:
    from models.inference import ARTIFACT_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["export"])
    parser.add_argument("--artifact", type=Path, default=ARTIFACT_DIR)
    args = parser.parse_args(argv)
    export_explainable(args.artifact)


if __name__ == "__main__":
    main()
