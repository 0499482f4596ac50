"""The skin tone around a lesion: synthetic skin of known CIELAB colour gives its ITA and group, whatever lies in
the middle of the photo; what cannot be skin gives no estimate; the measured range is per kind of photo."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.serving.preprocessing import INPUT_SIZE
from models.serving.skin_tone import (
    MEASURED_ITA_GROUPS,
    ItaGroup,
    SkinTone,
    estimate_ita,
    estimate_skin_tone,
    ita_group,
)
from models.serving.spot_change import srgb_to_lab
from shared.labels import PhotoKind

skimage_color = pytest.importorskip("skimage.color")

LIGHT_SKIN = (70.0, 10.0, 15.0)  # L*, a*, b*: ITA = atan(20 / 15) = 53.1 degrees, "light"
DARK_SKIN = (35.0, 12.0, 18.0)  # ITA = atan(-15 / 18) = -39.8 degrees, "dark"


def ita_of(lab: tuple[float, float, float]) -> float:
    return math.degrees(math.atan((lab[0] - 50.0) / lab[2]))


def skin_photo(lab: tuple[float, float, float], texture: float = 3.0, seed: int = 0) -> np.ndarray:
    """A prepared photo (uint8, 224x224x3) of skin of one CIELAB colour, with pixel noise as skin texture."""
    rgb: np.ndarray = np.asarray(skimage_color.lab2rgb(np.array([[lab]], dtype=float)))[0, 0] * 255.0
    noise = np.random.default_rng(seed).normal(0.0, texture, (INPUT_SIZE, INPUT_SIZE, 3))
    return np.clip(np.round(rgb + noise), 0, 255).astype(np.uint8)


def with_lesion(photo: np.ndarray, colour: tuple[int, int, int], radius: int = 70) -> np.ndarray:
    """A round dark spot in the middle, as patients centre the lesion."""
    ys, xs = np.mgrid[0:INPUT_SIZE, 0:INPUT_SIZE]
    centre = (INPUT_SIZE - 1) / 2
    inside = (ys - centre) ** 2 + (xs - centre) ** 2 <= radius**2
    changed = photo.copy()
    changed[inside] = colour
    return changed


def test_the_colour_conversion_matches_scikit_image() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (500, 3)).astype(np.uint8)
    expected = skimage_color.rgb2lab(pixels[None].astype(float) / 255.0)[0]
    assert np.allclose(srgb_to_lab(pixels), expected, atol=0.1)


def test_light_and_dark_skin_get_their_ita_and_group() -> None:
    light, dark = estimate_ita(skin_photo(LIGHT_SKIN)), estimate_ita(skin_photo(DARK_SKIN))
    assert light is not None and dark is not None
    # Within a few degrees: the lighter half of the pixels is measured, which the texture tilts a little.
    assert light == pytest.approx(ita_of(LIGHT_SKIN), abs=3.0) and ita_group(light) == ItaGroup.LIGHT
    assert dark == pytest.approx(ita_of(DARK_SKIN), abs=3.0) and ita_group(dark) == ItaGroup.DARK


@pytest.mark.parametrize("skin", [LIGHT_SKIN, DARK_SKIN])
def test_the_lesion_in_the_middle_does_not_move_the_estimate(skin: tuple[float, float, float]) -> None:
    plain = estimate_ita(skin_photo(skin))
    for lesion in [(60, 30, 20), (200, 60, 60), (20, 20, 20)]:  # a dark mole, a red nodule, a near-black spot
        assert estimate_ita(with_lesion(skin_photo(skin), lesion)) == pytest.approx(plain, abs=0.5), lesion


def test_hair_and_a_dermatoscopes_dark_vignette_in_the_ring_move_it_little() -> None:
    photo = skin_photo(LIGHT_SKIN)
    plain = estimate_ita(photo)
    hairy = photo.copy()
    hairy[::9, :] = (40, 30, 25)  # dark hairs across the photo: 1 row in 9
    ys, xs = np.mgrid[0:INPUT_SIZE, 0:INPUT_SIZE]
    distance = np.hypot(ys - INPUT_SIZE / 2, xs - INPUT_SIZE / 2) / (INPUT_SIZE / 2)
    # Black corners fading into the skin near the edge, as the round field of a dermatoscope leaves them.
    vignetted = (photo * np.clip((1.25 - distance) / 0.15, 0.0, 1.0)[..., None]).astype(np.uint8)
    for spoiled in (hairy, vignetted):
        estimate = estimate_ita(spoiled)
        assert estimate is not None and estimate == pytest.approx(plain, abs=3.0)
        assert ita_group(estimate) == ItaGroup.LIGHT


def test_what_cannot_be_skin_gives_no_estimate() -> None:
    grey_wall = np.full((INPUT_SIZE, INPUT_SIZE, 3), 128, np.uint8)
    blue_cloth = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    blue_cloth[...] = (40, 60, 160)
    black = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    blown_out = np.full((INPUT_SIZE, INPUT_SIZE, 3), 255, np.uint8)
    for picture in (grey_wall, blue_cloth, black, blown_out):
        assert estimate_ita(picture) is None
        assert estimate_skin_tone(picture, PhotoKind.CLINICAL) is None


@pytest.mark.parametrize(
    ("ita", "group"),
    [
        (80.0, ItaGroup.VERY_LIGHT),
        (55.0, ItaGroup.LIGHT),
        (41.0, ItaGroup.INTERMEDIATE),
        (28.0, ItaGroup.TAN),
        (10.0, ItaGroup.BROWN),
        (-30.0, ItaGroup.DARK),
        (-70.0, ItaGroup.DARK),
    ],
)
def test_the_standard_groups_take_their_upper_bound(ita: float, group: ItaGroup) -> None:
    assert ita_group(ita) == group


def test_the_measured_range_is_per_kind_of_photo_and_never_includes_the_dark_group() -> None:
    assert not SkinTone(60.0, PhotoKind.CLINICAL).outside_measured_range
    assert not SkinTone(15.0, PhotoKind.CLINICAL).outside_measured_range  # tan: phone photos hold enough of it
    assert SkinTone(15.0, PhotoKind.DERMOSCOPIC).outside_measured_range  # HAM10000's dermoscopy does not
    assert SkinTone(-40.0, PhotoKind.CLINICAL).outside_measured_range
    for groups in MEASURED_ITA_GROUPS.values():
        assert ItaGroup.VERY_LIGHT in groups and ItaGroup.DARK not in groups
        # One run from the lightest group down: a skin tone between two measured groups is measured too.
        assert groups == set(list(ItaGroup)[: len(groups)])
    dark = estimate_skin_tone(skin_photo(DARK_SKIN), PhotoKind.CLINICAL)
    assert dark is not None and dark.outside_measured_range
    assert dark.to_dict() == {"ita": dark.ita, "group": "dark", "outside_measured_range": True}
