"""The skin tone around a lesion, from the photo itself: the individual typology angle (ITA) of the skin in the
prepared image's outer ring, and whether it lies outside the skin tones SkinSense was measured on.

ITA = arctan((L* - 50) / b*) in degrees, from CIELAB (D65): lighter and less yellow skin has a higher angle. It is
the usual colorimetric stand-in for skin type when none was recorded (Chardon et al. 1991; the six groups below
as Del Bino et al. extended theirs). It is measured on the photo, so it moves with the phone's exposure and
white balance and with the light in the room: a rough grouping, never a skin type, and never shown to the patient
as a figure.

Which pixels: the outer ring of the 224x224 model input (patients centre the spot, so the middle is left out as
the lesion's), without pixels that cannot be skin as a phone sees it: near black (shadows, a dermatoscope's dark
vignette), blown out (reflections), grey (paper, walls) or outside skin's red-to-yellow hues (clothing, a blue pen
mark, a bluish dermatoscope light). What else reaches into the ring (the lesion's edge, hair, a second mole,
shadows, a vignette's fade) is darker than skin, so the ITA is the median over the lighter half of the pixels
left. Too few skin pixels: no estimate (None), and no caveat.

The range SkinSense was measured on, MEASURED_ITA_GROUPS, comes from ``benchmarks/skin_tone.py`` on the photos
its figures come from (the model card's "Skin tone").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from models.serving.spot_change import srgb_to_lab
from shared.labels import PhotoKind


class ItaGroup(StrEnum):
    """The six skin-colour groups by ITA, lightest first."""

    VERY_LIGHT = "very_light"  # ITA > 55
    LIGHT = "light"  # 41 < ITA <= 55
    INTERMEDIATE = "intermediate"  # 28 < ITA <= 41
    TAN = "tan"  # 10 < ITA <= 28
    BROWN = "brown"  # -30 < ITA <= 10
    DARK = "dark"  # ITA <= -30


# Each group's lower bound (exclusive), lightest first; DARK has none.
ITA_GROUP_FLOORS: tuple[tuple[ItaGroup, float], ...] = (
    (ItaGroup.VERY_LIGHT, 55.0),
    (ItaGroup.LIGHT, 41.0),
    (ItaGroup.INTERMEDIATE, 28.0),
    (ItaGroup.TAN, 10.0),
    (ItaGroup.BROWN, -30.0),
)

# The skin tones SkinSense's figures were measured on, per kind of photo: from the lightest group, those that each
# hold at least 5 % of the photos the kind's figures come from (fewer: whatever the model does there hardly moves
# the figures, so they say nothing about it) and at least 30 of them (fewer: not even a rough figure of their own).
# benchmarks/skin_tone.py measures and prints them. Phone photos (PAD-UFES-20's 328): very light to tan; brown
# holds 22 (7 %), dark 3. Dermoscopy (HAM10000's validation split): very light and light; intermediate holds 3.6 %.
# Darker groups are outside. The photos' ITA follows the light more than the skin (the recorded Fitzpatrick types
# I-III spread over every group), so this cannot find every darker skin; it catches skin that looks darker than
# nearly all the photos SkinSense was measured on, and tells the caveat (and takes a LOW away) for 7-8 % of them.
MEASURED_ITA_GROUPS: dict[PhotoKind, frozenset[ItaGroup]] = {
    PhotoKind.CLINICAL: frozenset({ItaGroup.VERY_LIGHT, ItaGroup.LIGHT, ItaGroup.INTERMEDIATE, ItaGroup.TAN}),
    PhotoKind.DERMOSCOPIC: frozenset({ItaGroup.VERY_LIGHT, ItaGroup.LIGHT}),
}

RING_WIDTH = 0.15  # of the side: the outer band whose skin is measured (the middle 70 % is left to the lesion)
MIN_SKIN_LIGHTNESS = 15.0  # L*: darker is shadow or a dermatoscope's vignette, not skin
MAX_SKIN_LIGHTNESS = 95.0  # L*: lighter is a reflection
CLIPPED = 250  # an sRGB channel this high is blown out: its true colour is unknown
MIN_SKIN_CHROMA = 6.0  # sqrt(a*^2 + b*^2): greyer has no hue to judge (paper, walls, a grey cast)
# Skin's hue angle atan2(b*, a*) in photos lies between red (0 degrees) and yellow (90), a* > 0 and b* > 0: the rest
# is not skin (skin_pixels).
# Every other pixel in each direction: a median over the quarter left (about 6,500 pixels of the ring) is as good,
# and costs 1.5 ms a photo instead of 6.5 (the whole screening takes about 12 ms).
PIXEL_STEP = 2
# Fewer skin pixels than this (about 6 % of the ring's pixels taken) and the ring is mostly something else (a
# vignette, clothing, the lesion filling the photo): its median would describe that, not the skin.
MIN_SKIN_PIXELS = 400


@dataclass(frozen=True)
class SkinTone:
    """The skin tone estimated around a lesion, and whether SkinSense was measured on such skin in photos of this
    kind."""

    ita: float  # degrees
    photo_kind: PhotoKind

    @property
    def group(self) -> ItaGroup:
        return ita_group(self.ita)

    @property
    def outside_measured_range(self) -> bool:
        return self.group not in MEASURED_ITA_GROUPS[self.photo_kind]

    def to_dict(self) -> dict[str, object]:
        return {
            "ita": self.ita,
            "group": self.group.value,
            "outside_measured_range": self.outside_measured_range,
        }


def ita_group(ita: float) -> ItaGroup:
    return next((group for group, floor in ITA_GROUP_FLOORS if ita > floor), ItaGroup.DARK)


def ring_mask(height: int, width: int) -> np.ndarray:
    """The outer band of a height x width image: True where the skin is measured."""
    band_y, band_x = max(1, round(RING_WIDTH * height)), max(1, round(RING_WIDTH * width))
    ring = np.ones((height, width), bool)
    ring[band_y:-band_y, band_x:-band_x] = False
    return ring


def skin_pixels(prepared: np.ndarray) -> np.ndarray:
    """CIELAB (n, 3) of the ring's pixels that can be skin (see the module's docstring), every PIXEL_STEP-th in
    each direction."""
    sampled = prepared[::PIXEL_STEP, ::PIXEL_STEP]
    rgb = sampled[ring_mask(*sampled.shape[:2])]
    lab = srgb_to_lab(rgb)
    lightness, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    plausible = (
        (rgb.max(axis=1) < CLIPPED)
        & (lightness >= MIN_SKIN_LIGHTNESS)
        & (lightness <= MAX_SKIN_LIGHTNESS)
        & (a * a + b * b >= MIN_SKIN_CHROMA**2)
        & (a > 0)  # hue between red and yellow
        & (b > 0)
    )
    return np.asarray(lab[plausible])


def estimate_ita(prepared: np.ndarray) -> float | None:
    """The ITA (degrees) of the skin around the lesion in a prepared image (uint8, 224x224x3), or None when too
    few of its ring's pixels can be skin."""
    lab = skin_pixels(prepared)
    if len(lab) < MIN_SKIN_PIXELS:
        return None
    # What else reaches into the ring (the lesion's edge, hair, shadows, a dermatoscope's vignette) is darker than
    # the skin, never lighter (reflections are cut above): the lighter half of the pixels is the skin's.
    lighter = lab[lab[:, 0] >= np.median(lab[:, 0])]
    # b* > 0 for every pixel kept (the hue lies between red and yellow), so the angle is defined. Rounded to what
    # it can tell, so that the value stored with the job decides the same as the one computed here.
    return round(float(np.median(np.degrees(np.arctan((lighter[:, 0] - 50.0) / lighter[:, 2])))), 1)


def estimate_skin_tone(prepared: np.ndarray, photo_kind: PhotoKind) -> SkinTone | None:
    ita = estimate_ita(prepared)
    return None if ita is None else SkinTone(ita, photo_kind)
