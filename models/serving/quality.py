"""Photo quality, measured before the model: too dark, too bright, or too soft for the photo's kind.
Each measure is cheap (numpy on the 224x224 model input) and each threshold sits beyond what the lesion
photos of both data sets show (see the model card for the refusal rates), so it refuses only photos a
patient can easily take better, and says how. Blur and a lesion too small in the frame are mostly
caught by the picture head (models/training/picture_training.py), which learned them; the sharpness floor per
kind catches what it lets through.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

# Measured on HAM10000 and PAD-UFES-20: the darkest 1 % of their photos have a mean luma of 112 and 94,
# the brightest 1 % 203 and 195, and none has blown-out pixels; photos 85 % darker or 2.5 times brighter
# fall well past these limits.
MIN_BRIGHTNESS = 40.0  # mean luma (0-255)
MAX_BRIGHTNESS = 235.0
MAX_SATURATED_SHARE = 0.5  # share of pixels blown out to white


@dataclass(frozen=True)
class QualityMeasures:
    brightness: float
    saturated_share: float
    sharpness: float  # mean absolute Laplacian of the luma, relative to the photo's contrast


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
    return QualityMeasures(float(luma.mean()), saturated, sharpness)
