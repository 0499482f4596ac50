"""Whether a skin spot looks larger, smaller, darker, lighter or otherwise changed in colour between two phone
photos a patient took of it at different times. Pure functions on the bytes the patient sent; no model.

Method. Each photo goes through the project's loading (``shared.images.decode_image``, then
``models.serving.preprocessing.prepare_image``: EXIF orientation, alpha, 224x224). The spot is segmented in
CIELAB: the skin's colour is a plane fitted to the photo's outer frame (lighting falls off across a photo),
every pixel's colour distance (ΔE76, lighter-than-skin counting by colour only, so reflections are no spot) to
it is thresholded by Otsu's method with a histogram weighted towards the centre (patients centre the spot),
and the connected region carrying most of that centre weight, holes filled, is the spot. The skin around it
is a ring outside the mask (a gap, then a band, both proportional to the spot's size) without the pixels
that look like spot (hair, a second mole, a pen mark).

Size. Two phone photos are taken at different distances and zooms, and nothing in a skin photo has a known
size (no ruler, no coin), so a size in millimetres cannot be had. The measure is the spot's area as a share of
the photo, which is only as steady as the patient's framing: two photos of the same lesion in PAD-UFES-20
(retakes, taken as unchanged) differ by a factor of 1.7 in that share at the median and up to 4.3. Only a change
beyond that spread (3.8-fold in area) is called LARGER or SMALLER, so a real growth of 30-60 % in area, or even
threefold, is missed: the photos can hint at a gross change, never rule one out, and the patient must still be
asked whether the spot has grown. Tried and dropped (measured on the fitting pairs): scaling by the skin's
texture (the radial spectrum's centroid around the spot: pores and lines as a ruler) made the spread wider
(median fold 1.85 against 1.65), being blurred and compressed differently in each photo; the ratio of the spot
to the skin ring around it carries no scale, since the ring is drawn from the spot's own size.

Colour. The spot's median CIELAB colour minus the ring's, so that the phone's exposure and white balance,
which shift both alike, largely cancel. ``darkening`` is how much darker than its skin the spot became (in
L*, positive = darker); ``colour_shift`` is the change of that contrast in the chromatic plane (a*, b*: hue
and saturation, lightness left to ``darkening``). Cancelling is partial: unchanged pairs still differ by 3.5 L*
at the median and up to 13, so DARKER needs about 11 L* more contrast; a spot darkened by 20 L* is found in
nearly every photo, one darkened by 10 mostly not.

Refusals. The two photos are not compared (``comparable=False`` with a reason) when either has no distinct
spot near its centre, a spot too small to measure, a spot that fills the photo or runs off its edges (no skin
around it to compare with), or when the skin itself differs so much between the two photos (a different light
or body site) that the relative measures stop cancelling it.

Thresholds: ``benchmarks/spot_change.py`` chose them on half of PAD-UFES-20's patients and reports them on the
other half (the model card's "Change between two photos of the same spot").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image, ImageFilter

from models.serving.preprocessing import prepare_image
from shared.images import decode_image

# --- Change thresholds: chosen by benchmarks/spot_change.py on the fitting half of PAD-UFES-20's same-lesion
# pairs (each the 95th percentile of that measure over unchanged pairs, so that together they call most
# unchanged pairs "no clear change"); the held-out half's figures are in the model card.
SIZE_RATIO_LIMIT = 3.83  # later/earlier area share beyond this (or below its inverse): LARGER (SMALLER)
DARKENING_LIMIT = 10.7  # change of the spot-minus-skin L* beyond this: DARKER (LIGHTER)
COLOUR_SHIFT_LIMIT = 12.2  # change of the spot-minus-skin (a*, b*) beyond this: COLOUR

# --- Refusals: what a photo must show for its spot to be measured at all, set against the fitting half's 160
# photos (benchmarks/spot_change.py prints their measures; together the refusals turn away 10 of them) and
# against flat and noise pictures (tests/models/test_spot_change.py).
MIN_SPOT_CONTRAST = 6.0  # ΔE76 between the spot's and the skin's median colours (fitting photos' spots: 6.7 and up)
# The spot's contrast over the skin's own spread (the norm of the ring's per-channel interquartile ranges): chance
# blobs in noise pictures reach 0.06-0.4; the fitting photos' spots 0.9 and more in 95 % of them.
MIN_SPOT_DISTINCTNESS = 0.5
# Of the photo: below 1 % (500 pixels of 224x224, 25 across) a fifth of a spot's pixels lie on its edge, so its
# area is uncertain by about as much, and chance blobs in noise pictures are 0.5-0.7 %. The fitting photos' spots
# are 2.4 % of the photo or more in 95 % of them.
MIN_SPOT_SHARE = 0.01
MAX_SPOT_SHARE = 0.6  # of the photo: more leaves too little skin around it
# Of the photo's outer frame covered by the spot: more runs off the photo. 95 % of the fitting photos' spots
# cover less than 7 %; the two that covered 13 % and 22 % were a black marker band and a sleeve taken for the spot.
MAX_EDGE_SHARE = 0.1
MIN_RING_PIXELS = 200  # skin pixels around the spot needed for its colour
# ΔE76 between the two photos' skin colours: more is another light or another place. Unchanged pairs of the fitting
# half differ by up to 33 without their measures going astray, so only what lies beyond is refused.
MAX_SKIN_DIFFERENCE = 40.0

_BLUR_RADIUS = 2.0  # before segmenting: smooths skin texture, pores and thin hairs away
_FRAME = 0.1  # the outer frame (share of the side) that gives the skin's colour
_CENTRE_SIGMA = 0.3  # of the side: how strongly the histogram favours the centre


@dataclass(frozen=True)
class ChangeLimits:
    """How far each measure must move before it is called a change."""

    size_ratio: float = SIZE_RATIO_LIMIT
    darkening: float = DARKENING_LIMIT
    colour_shift: float = COLOUR_SHIFT_LIMIT


MODULE_LIMITS = ChangeLimits()


class SpotChangeKind(StrEnum):
    LARGER = "larger"
    SMALLER = "smaller"
    DARKER = "darker"
    LIGHTER = "lighter"
    COLOUR = "colour"  # hue or saturation changed (lightness is DARKER / LIGHTER)


@dataclass(frozen=True)
class SpotComparison:
    comparable: bool
    reason: str | None  # why the photos could not be compared; None when they were
    size_ratio: float | None  # later/earlier area as a share of the photo
    darkening: float | None  # change of the spot-minus-skin L* (positive: the spot became darker)
    colour_shift: float | None  # change of the spot-minus-skin (a*, b*), in ΔE units
    changes: tuple[SpotChangeKind, ...]

    @property
    def no_clear_change(self) -> bool:
        return self.comparable and not self.changes


@dataclass(frozen=True, eq=False)  # holds arrays, which do not compare to one truth value
class SpotMeasures:
    """One photo's spot: its mask on the prepared image and the colours it is compared by."""

    mask: np.ndarray  # bool, INPUT_SIZE x INPUT_SIZE
    share: float  # of the photo
    edge_share: float  # of the photo's outer frame covered by the spot
    spot_lab: np.ndarray  # median CIELAB of the spot
    skin_lab: np.ndarray  # median CIELAB of the ring of skin around it
    ring_pixels: int
    distinctness: float  # the spot's contrast over the skin's own spread

    @property
    def contrast(self) -> np.ndarray:
        """The spot's colour relative to its skin (L*, a*, b*)."""
        return np.asarray(self.spot_lab - self.skin_lab)


class SpotNotFound(Exception):
    """A photo in which no spot can be measured; the message is plain English for the patient."""


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of 8-bit sRGB values, any leading shape."""
    linear = rgb.astype(np.float64) / 255.0
    linear = np.where(linear <= 0.04045, linear / 12.92, ((linear + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def _centre_weights(height: int, width: int) -> np.ndarray:
    ys = (np.arange(height) - (height - 1) / 2) / height
    xs = (np.arange(width) - (width - 1) / 2) / width
    return np.asarray(np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * _CENTRE_SIGMA**2)))


def _weighted_otsu(values: np.ndarray, weights: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of ``values`` with each pixel counted by its weight."""
    histogram, edges = np.histogram(values, bins=bins, weights=weights)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(histogram)
    total = below[-1]
    above = total - below
    below_sum = np.cumsum(histogram * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_below = below_sum / below
        mean_above = (below_sum[-1] - below_sum) / above
        between = below * above * (mean_below - mean_above) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return float(edges[int(np.argmax(between)) + 1])


def _filtered(mask: np.ndarray, image_filter: ImageFilter.Filter, times: int = 1) -> np.ndarray:
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    for _ in range(times):
        image = image.filter(image_filter)
    return np.asarray(image) > 127


def _dilated(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` grown by ``pixels`` in every direction (a square): a window sum on the integral image, whose
    cost does not grow with ``pixels`` as repeated 3x3 filters' does."""
    if pixels <= 0:
        return mask
    width = 2 * pixels + 1
    integral = np.pad(np.pad(mask, pixels).astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    window = (
        integral[width:, width:] - integral[:-width, width:] - integral[width:, :-width] + integral[:-width, :-width]
    )
    return np.asarray(window > 0)


def _component_labels(mask: np.ndarray) -> np.ndarray:
    """Each pixel of ``mask`` labelled by the smallest flat index in its 4-connected region; -1 outside it.

    Min-label propagation with pointer jumping, in numpy: Pillow's flood fill runs in Python (0.1 s a region)
    and SciPy is no serving dependency."""
    outside = mask.size
    labels = np.where(mask, np.arange(mask.size).reshape(mask.shape), outside)
    inside = mask.ravel()
    while True:
        spread = labels.copy()
        np.minimum(spread[1:], labels[:-1], out=spread[1:])
        np.minimum(spread[:-1], labels[1:], out=spread[:-1])
        np.minimum(spread[:, 1:], labels[:, :-1], out=spread[:, 1:])
        np.minimum(spread[:, :-1], labels[:, 1:], out=spread[:, :-1])
        spread = np.where(mask, spread, outside)
        flat = spread.ravel()
        for _ in range(4):  # a pixel takes its label's label: labels travel far in few rounds
            flat[inside] = flat[flat[inside]]
        if np.array_equal(spread, labels):
            return np.where(mask, labels, -1)
        labels = spread


def _central_region(mask: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """The 4-connected region of ``mask`` carrying the most centre weight, or None where the mask is empty."""
    if not mask.any():
        return None
    labels = _component_labels(mask)
    weight_per_label = np.bincount(labels[mask], weights=weights[mask], minlength=mask.size)
    return np.asarray(labels == int(np.argmax(weight_per_label)))


def _holes_filled(mask: np.ndarray) -> np.ndarray:
    background = ~np.pad(mask, 1)  # the padding joins every stretch of background that reaches the edge
    outside = _component_labels(background) == 0
    return np.asarray(~outside[1:-1, 1:-1])


def _skin_plane(lab: np.ndarray) -> np.ndarray:
    """The skin's expected CIELAB at every pixel: a plane (lighting falls off across a photo) fitted to the
    photo's outer frame, refitted on its closest three quarters so that hair, shadows and a second spot there
    do not tilt it."""
    height, width = lab.shape[:2]
    frame = max(2, round(_FRAME * min(height, width)))
    outer = np.ones((height, width), bool)
    outer[frame:-frame, frame:-frame] = False
    ys, xs = np.mgrid[0:height, 0:width]
    design = np.stack([np.ones((height, width)), xs / width - 0.5, ys / height - 0.5], axis=-1)
    samples, values = design[outer], lab[outer]
    coefficients = np.linalg.lstsq(samples, values, rcond=None)[0]
    residuals = np.linalg.norm(values - samples @ coefficients, axis=-1)
    closest = residuals <= np.percentile(residuals, 75)
    coefficients = np.linalg.lstsq(samples[closest], values[closest], rcond=None)[0]
    return np.asarray(design @ coefficients)


def segment_spot(prepared: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(the spot's mask, the mask of every spot-like pixel) on a prepared photo (uint8, 224x224x3), or None."""
    height, width = prepared.shape[:2]
    blurred = np.asarray(Image.fromarray(prepared).filter(ImageFilter.GaussianBlur(_BLUR_RADIUS)))
    lab = srgb_to_lab(blurred)
    difference = lab - _skin_plane(lab)
    # Lighter than the skin counts only by its colour: reflections and pale skin folds are not spots.
    difference[..., 0] = np.minimum(difference[..., 0], 0.0)
    distance = np.linalg.norm(difference, axis=-1)
    if float(distance.max()) < MIN_SPOT_CONTRAST:  # a flat picture: nothing differs from the skin at all
        return None
    weights = _centre_weights(height, width)
    spot_like = distance > _weighted_otsu(distance, weights)
    # Opening, then closing: specks and hairs off, the spot's own gaps (reflections) closed.
    cleaned = _filtered(_filtered(spot_like, ImageFilter.MinFilter(3)), ImageFilter.MaxFilter(3))
    cleaned = _filtered(_filtered(cleaned, ImageFilter.MaxFilter(3)), ImageFilter.MinFilter(3))
    region = _central_region(cleaned, weights)
    if region is None:
        return None
    return _holes_filled(region), spot_like


def measure_spot(prepared: np.ndarray) -> SpotMeasures:
    """The spot of one prepared photo, or SpotNotFound with the reason in plain English."""
    found = segment_spot(prepared)
    if found is None:
        raise SpotNotFound("no spot stands out from the skin")
    mask, spot_like = found
    height, width = mask.shape
    share = float(mask.mean())
    if share < MIN_SPOT_SHARE:
        raise SpotNotFound("the spot is too small in the photo to measure")
    if share > MAX_SPOT_SHARE:
        raise SpotNotFound("the spot fills the photo, leaving no skin around it to compare with")
    edge = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    edge_share = float(edge.mean())
    if edge_share > MAX_EDGE_SHARE:
        raise SpotNotFound("the spot runs off the edges of the photo")
    radius = math.sqrt(share * height * width / math.pi)
    gap = max(2, round(0.2 * radius))
    band = max(4, round(0.5 * radius))
    ring = _dilated(mask, gap + band) & ~_dilated(mask, gap) & ~spot_like
    ring_pixels = int(ring.sum())
    if ring_pixels < MIN_RING_PIXELS:
        raise SpotNotFound("too little plain skin is visible around the spot")
    lab = srgb_to_lab(prepared)
    inner = _filtered(mask, ImageFilter.MinFilter(3))  # the spot's edge pixels mix spot and skin
    spot_lab = np.median(lab[inner if inner.sum() >= 20 else mask], axis=0)
    skin_lab = np.median(lab[ring], axis=0)
    lower, upper = np.percentile(lab[ring], [25, 75], axis=0)
    contrast = float(np.linalg.norm(spot_lab - skin_lab))
    distinctness = contrast / max(float(np.linalg.norm(upper - lower)), 1e-6)
    if contrast < MIN_SPOT_CONTRAST or distinctness < MIN_SPOT_DISTINCTNESS:
        raise SpotNotFound("no spot stands out from the skin")
    return SpotMeasures(mask, share, edge_share, spot_lab, skin_lab, ring_pixels, distinctness)


def measured_spot(prepared: np.ndarray) -> SpotMeasures | SpotNotFound:
    """``measure_spot``, its refusal returned rather than raised (to be compared, or cached, like a measure)."""
    try:
        return measure_spot(prepared)
    except SpotNotFound as refusal:
        return refusal


def compare_measures(
    earlier: SpotMeasures | SpotNotFound, later: SpotMeasures | SpotNotFound, limits: ChangeLimits = MODULE_LIMITS
) -> SpotComparison:
    """The change from one photo's spot to the other's, or the refusal (the first photo's reason first)."""
    if isinstance(earlier, SpotNotFound):
        return _refused(f"in the earlier photo, {earlier}")
    if isinstance(later, SpotNotFound):
        return _refused(f"in the later photo, {later}")
    skin_difference = float(np.linalg.norm(later.skin_lab - earlier.skin_lab))
    if skin_difference > MAX_SKIN_DIFFERENCE:
        return _refused("the light or the skin differs too much between the two photos")
    size_ratio = later.share / earlier.share
    darkening = float(earlier.contrast[0] - later.contrast[0])
    colour_shift = float(np.linalg.norm(later.contrast[1:] - earlier.contrast[1:]))
    changes: list[SpotChangeKind] = []
    if size_ratio > limits.size_ratio:
        changes.append(SpotChangeKind.LARGER)
    elif size_ratio < 1 / limits.size_ratio:
        changes.append(SpotChangeKind.SMALLER)
    if darkening > limits.darkening:
        changes.append(SpotChangeKind.DARKER)
    elif darkening < -limits.darkening:
        changes.append(SpotChangeKind.LIGHTER)
    if colour_shift > limits.colour_shift:
        changes.append(SpotChangeKind.COLOUR)
    return SpotComparison(True, None, size_ratio, darkening, colour_shift, tuple(changes))


def _refused(reason: str) -> SpotComparison:
    return SpotComparison(False, reason, None, None, None, ())


def compare_prepared(earlier: np.ndarray, later: np.ndarray, limits: ChangeLimits = MODULE_LIMITS) -> SpotComparison:
    """``compare_spots`` on two prepared photos (uint8, 224x224x3)."""
    return compare_measures(measured_spot(earlier), measured_spot(later), limits)


def compare_spots(earlier: bytes, later: bytes, limits: ChangeLimits = MODULE_LIMITS) -> SpotComparison:
    """Whether the spot in ``later`` looks changed from ``earlier`` (photos as the patient sent them).

    Raises ``shared.images.UnreadableImage`` for a file that is not a readable photo, as everywhere else; a
    readable photo in which no spot can be measured is refused (``comparable=False``), never raised. ``limits``
    other than the module's are for the benchmark that chooses them.
    """
    return compare_prepared(prepare_image(decode_image(earlier)), prepare_image(decode_image(later)), limits)
