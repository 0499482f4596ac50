"""Training augmentation in numpy and Pillow, so that the same code feeds any Keras backend.

``augment`` is what every training image gets: flips, right-angle rotations (a lesion has no canonical
orientation), a random crop for framing, and mild colour jitter. ``phone_style`` turns a dermoscopic
image into something closer to what a phone takes: the dermatoscope's dark round vignette cut away,
the lesion smaller in a frame of skin, softer focus, other light, JPEG artefacts. ``on_skin`` puts a
lesion-only crop (black outside the lesion) onto a plain skin background with a soft edge.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from models.serving.preprocessing import INPUT_SIZE, RESAMPLING

# Skin tones (RGB) for backgrounds, light to dark; varied further by brightness jitter.
SKIN_TONES = np.array(
    [(238, 200, 178), (226, 180, 150), (212, 160, 128), (190, 135, 100), (160, 110, 80), (115, 78, 55)],
    dtype=np.float32,
)


def _rgb_to_hsv_shift(pixels: np.ndarray, hue_shift: float, saturation: float) -> np.ndarray:
    image = Image.fromarray(pixels.astype(np.uint8)).convert("HSV")
    hsv = np.asarray(image).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue_shift * 255) % 255
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    return np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")).astype(np.float32)


def augment(image: Image.Image, rng: np.random.Generator, size: int = INPUT_SIZE) -> np.ndarray:
    """One training view of ``image``: uint8 (size, size, 3)."""
    width, height = image.size
    scale = rng.uniform(0.75, 1.0)
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    pixels = np.asarray(image.crop((left, top, left + w, top + h)).resize((size, size), RESAMPLING))
    pixels = np.rot90(pixels, int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    x: np.ndarray = pixels.astype(np.float32)
    if rng.random() < 0.5:
        x = _rgb_to_hsv_shift(x, rng.uniform(-0.03, 0.03), rng.uniform(0.85, 1.15))
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.85, 1.15) + mean + rng.uniform(-0.08, 0.08) * 255
    return np.asarray(np.clip(x, 0, 255), dtype=np.uint8)


def _skin_canvas(size: tuple[int, int], tone: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # float32 throughout and the shading as two broadcast ramps: this runs for every crop of every epoch, in the
    # loader threads, under the GIL beside training (float64 and a full grid made it a third of an epoch's time).
    width, height = size
    across = rng.uniform(-0.2, 0.2) * (np.arange(width, dtype=np.float32) / width - 0.5)
    down = rng.uniform(-0.2, 0.2) * (np.arange(height, dtype=np.float32) / height - 0.5)
    shading = 1 + across[None, :] + down[:, None]
    canvas = rng.standard_normal((height, width, 3), dtype=np.float32)
    canvas *= np.float32(rng.uniform(2, 7))
    canvas += tone.astype(np.float32)[None, None, :] * shading[..., None]
    return np.clip(canvas, 0, 255, out=canvas)


def _feathered_paste(canvas: np.ndarray, patch: np.ndarray, mask: np.ndarray, left: int, top: int) -> np.ndarray:
    h, w = patch.shape[:2]
    region = canvas[top : top + h, left : left + w]
    region += (patch - region) * mask[..., None]  # in place: region * (1 - mask) + patch * mask
    return canvas


def _soft_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    image = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(image).astype(np.float32) / 255


def _border_colour(pixels: np.ndarray) -> np.ndarray:
    ring = np.concatenate([pixels[:4].reshape(-1, 3), pixels[-4:].reshape(-1, 3)])
    return np.asarray(np.median(ring, axis=0), dtype=np.float32)


def _camera(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Phone camera effects: light, softer focus, JPEG."""
    # Exposure, white balance and gamma as one lookup table per channel (the same curve as computing it per pixel,
    # at a fraction of the cost: the image is uint8, so each channel has only 256 inputs).
    gain = rng.uniform(0.75, 1.2) * rng.uniform(0.93, 1.07, 3)
    levels = np.arange(256, dtype=np.float64)[:, None] * gain[None, :]
    curve = 255 * (np.clip(levels, 0, 255) / 255) ** rng.uniform(0.8, 1.25)
    table = np.clip(curve, 0, 255).astype(np.uint8)  # (256, 3)
    image = image.convert("RGB").point(table.T.ravel().tolist())
    if rng.random() < 0.6:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.6)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(35, 92)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def phone_style(
    image: Image.Image, rng: np.random.Generator, frame_range: tuple[float, float] = (1.2, 2.2)
) -> Image.Image:
    """A dermoscopic image made to look more like a phone close-up; ``frame_range`` is how many times
    larger than the lesion's picture the frame of skin around it is."""
    width, height = image.size
    keep = rng.uniform(0.65, 0.85) if frame_range[0] < 3 else 0.6  # cut the vignette's dark corners away
    w, h = int(width * keep), int(height * keep)
    left, top = (width - w) // 2, (height - h) // 2
    core = np.asarray(image.convert("RGB").crop((left, top, left + w, top + h))).astype(np.float32)
    frame = rng.uniform(*frame_range)  # the lesion smaller in a frame of skin like its own border
    canvas_w, canvas_h = int(w * frame), int(h * frame)
    tone = _border_colour(core) * rng.uniform(0.95, 1.05)
    canvas = _skin_canvas((canvas_w, canvas_h), tone, rng)
    mask = np.zeros((h, w), np.float32)
    margin = max(2, min(w, h) // 10)
    mask[margin:-margin, margin:-margin] = 1
    paste_left = int(rng.integers(0, canvas_w - w + 1))
    paste_top = int(rng.integers(0, canvas_h - h + 1))
    canvas = _feathered_paste(canvas, core, _soft_mask(mask, margin / 2), paste_left, paste_top)
    return _camera(Image.fromarray(canvas.astype(np.uint8)), rng)


def on_skin(crop: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A lesion-only crop (black outside the lesion) on a skin background, as a phone would frame it."""
    pixels = np.asarray(crop.convert("RGB")).astype(np.float32)
    # The segmentation's edge is dark and jagged: shrink the mask by a few pixels before feathering it.
    edge = Image.fromarray(((pixels.max(axis=2) > 12) * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(5))
    lesion = (np.asarray(edge) > 0).astype(np.float32)
    height, width = lesion.shape
    frame = rng.uniform(1.0, 1.6)
    canvas_w, canvas_h = int(width * frame), int(height * frame)
    tone = SKIN_TONES[int(rng.integers(0, len(SKIN_TONES)))] * rng.uniform(0.9, 1.1)
    canvas = _skin_canvas((canvas_w, canvas_h), tone, rng)
    left, top = int(rng.integers(0, canvas_w - width + 1)), int(rng.integers(0, canvas_h - height + 1))
    canvas = _feathered_paste(canvas, pixels, _soft_mask(lesion, rng.uniform(1.0, 3.0)), left, top)
    return _camera(Image.fromarray(canvas.astype(np.uint8)), rng)
