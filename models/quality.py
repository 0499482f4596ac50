"""Photo quality, measured before the model: too dark, too bright, too blurred, or the spot too small in
the frame. Each measure is cheap (numpy on the 224x224 model input) and each threshold sits beyond what
the lesion photos of both data sets show (see the model card for the refusal rates), so it refuses only
photos a patient can easily take better, and says how.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

# Chosen on HAM10000 and PAD-UFES-20 (see measure_quality in models/evaluate_gates.py): each refuses
# well under 1 % of either data set's lesion photos.
MIN_BRIGHTNESS = 40.0  # mean luma (0-255)
MAX_BRIGHTNESS = 235.0
MAX_SATURATED_SHARE = 0.5  # share of pixels blown out to white
MIN_SHARPNESS = 3.0  # mean absolute Laplacian of the luma, after normalising contrast
MIN_SPOT_SHARE = 0.005  # share of the frame that differs clearly from the surrounding skin


@dataclass(frozen=True)
class QualityMeasures:
    brightness: float
    saturated_share: float
    sharpness: float
    spot_share: float


def _luma(prepared: np.ndarray) -> np.ndarray:
    rgb = prepared.astype(np.float32)
    return np.asarray(0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])


def measure_quality(prepared: np.ndarray) -> QualityMeasures:
    """Quality measures of one model input (uint8, 224x224x3)."""
    luma = _luma(prepared)
    saturated = float((prepared.min(axis=2) >= 250).mean())
    # Sharpness: Laplacian energy relative to the photo's own contrast, so that a low-contrast but sharp
    # photo is not taken for a blurred one.
    laplacian = np.asarray(Image.fromarray(luma.astype(np.uint8)).filter(ImageFilter.FIND_EDGES), np.float32)
    inner = laplacian[2:-2, 2:-2]
    contrast = float(np.std(luma)) + 8.0
    sharpness = float(inner.mean()) / contrast * 100
    # Spot: pixels clearly darker or more coloured than the frame's border (the surrounding skin).
    border = np.concatenate([prepared[:12].reshape(-1, 3), prepared[-12:].reshape(-1, 3)]).astype(np.float32)
    skin = np.median(border, axis=0)
    distance = np.linalg.norm(prepared.astype(np.float32) - skin, axis=2)
    spread = float(np.median(np.linalg.norm(border - skin, axis=1))) + 10.0
    spot_share = float((distance > 4 * spread).mean())
    return QualityMeasures(float(luma.mean()), saturated, sharpness, spot_share)
