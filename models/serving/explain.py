"""Why the model said what it said: the class activation map of the served network (models/serving/explanation_head.py),
drawn over the photo.

``explanation_picture`` renders the photo with that heat map beside a bar chart of the probabilities, as a
JPEG for Telegram, in about 5 ms on one core from the feature map the analysis kept (`skinsense benchmark`,
its explanation column).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from models.serving.inference import Classifier
from models.serving.preprocessing import prepare_image
from shared.images import decode_image
from shared.labels import CLASS_CODES, EVERYDAY_NAMES, MALIGNANT_CODES, PhotoKind

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
    image = decode_image(photo)
    top_class = CLASS_CODES.index(str(ranking[0]["code"]))
    if feature_map is None:
        feature_map = classifier.feature_map(prepare_image(image), photo_kind)
    activation = classifier.activation_map_of(feature_map, photo_kind, top_class)
    return render_explanation(ImageOps.exif_transpose(image), activation, ranking)
