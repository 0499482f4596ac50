"""Synthetic changes of a photographed spot (larger, darker), for the spot-change tests and benchmark: what a
later photo of the same spot would show had the spot grown or darkened, everything else kept."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, ImageFilter
from skimage.color import lab2rgb, rgb2lab

from models.serving.spot_change import segment_spot

_FEATHER = 2.0  # Gaussian radius of the edge along which the change fades into the photo


def png(prepared: np.ndarray) -> bytes:
    """PNG bytes of a prepared photo: lossless, so that only the synthetic change differs."""
    buffer = io.BytesIO()
    Image.fromarray(prepared).save(buffer, "PNG")
    return buffer.getvalue()


def _spot_mask(prepared: np.ndarray) -> np.ndarray:
    found = segment_spot(prepared)
    if found is None:
        raise ValueError("no spot in this photo to change")
    return found[0]


def _feathered(mask: Image.Image, grow: int) -> np.ndarray:
    """A 0-1 blending weight: ``mask`` grown by ``grow`` pixels, its edge softened."""
    grown = mask.filter(ImageFilter.MaxFilter(2 * grow + 1)) if grow else mask
    return np.asarray(grown.filter(ImageFilter.GaussianBlur(_FEATHER)), np.float64)[..., None] / 255.0


def enlarged_spot(prepared: np.ndarray, area_factor: float) -> np.ndarray:
    """The photo with its spot scaled by ``area_factor`` in area about its centre, blended into the skin."""
    mask = _spot_mask(prepared)
    ys, xs = np.nonzero(mask)
    centre_x, centre_y = float(xs.mean()), float(ys.mean())
    scale = math.sqrt(area_factor)
    # Each output pixel takes the input pixel 1/scale as far from the centre: the spot and its rim grow.
    inverse = (1 / scale, 0.0, centre_x * (1 - 1 / scale), 0.0, 1 / scale, centre_y * (1 - 1 / scale))
    photo = Image.fromarray(prepared)
    scaled = photo.transform(photo.size, Image.Transform.AFFINE, inverse, Image.Resampling.BILINEAR)
    scaled_mask = Image.fromarray(mask.astype(np.uint8) * 255).transform(
        photo.size, Image.Transform.AFFINE, inverse, Image.Resampling.BILINEAR
    )
    weight = _feathered(scaled_mask, grow=3)
    blended = weight * np.asarray(scaled, np.float64) + (1 - weight) * prepared.astype(np.float64)
    return np.asarray(np.clip(np.round(blended), 0, 255), np.uint8)


def darkened_spot(prepared: np.ndarray, lightness: float) -> np.ndarray:
    """The photo with its spot's L* lowered by ``lightness`` (CIELAB units), fading out at its edge."""
    weight = _feathered(Image.fromarray(_spot_mask(prepared).astype(np.uint8) * 255), grow=0)[..., 0]
    lab = rgb2lab(prepared)
    lab[..., 0] = np.clip(lab[..., 0] - lightness * weight, 0.0, 100.0)
    with warnings.catch_warnings():
        # Some darkened colours fall outside sRGB; clipping them is what a camera would do too.
        warnings.filterwarnings("ignore", "Conversion from CIE-LAB", UserWarning)
        rgb = lab2rgb(lab)
    return np.asarray(np.clip(np.round(rgb * 255), 0, 255), np.uint8)
