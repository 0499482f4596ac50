"""Pictures that are not lesion photos, built from what is on this machine, to fit and measure the
not-a-lesion gate: sample photos shipped with scikit-image, scikit-learn and matplotlib (people, pets,
landscapes, food, objects, rooms, space, microscopy), generated documents, screenshots, abstract
pictures, textures and noise, plain skin, and the skin around the lesion in the data's own phone photos.

Every picture belongs to a ``group`` (its source): held-out measurement keeps whole groups aside, so a
crop of a picture never scores a gate fitted on another crop of the same picture.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from models.serving.preprocessing import INPUT_SIZE


@dataclass(frozen=True)
class NegativePicture:
    group: str  # the source; crops and variants of one source share it
    kind: str  # photo, document, screenshot, abstract, texture, noise, plain_skin, skin_without_lesion
    image: Image.Image


def _sample_photo_files() -> list[Path]:
    import matplotlib
    import skimage
    import sklearn.datasets

    skimage_data = Path(skimage.__file__).parent / "data"
    files = [
        p for p in sorted(skimage_data.iterdir()) if p.suffix in (".png", ".jpg") and not p.name.startswith("chess")
    ]
    files += sorted((Path(sklearn.datasets.__file__).parent / "images").glob("*.jpg"))
    mpl_samples = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
    files += [mpl_samples / name for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")]
    return [f for f in files if f.is_file()]


def _faces() -> list[Image.Image]:
    import skimage

    faces = np.load(Path(skimage.__file__).parent / "data" / "lfw_subset.npy")
    return [Image.fromarray((face * 255).astype(np.uint8)).convert("RGB") for face in faces[:60]]


def _random_crops(image: Image.Image, rng: random.Random, count: int) -> Iterator[Image.Image]:
    image = image.convert("RGB")
    width, height = image.size
    for _ in range(count):
        scale = rng.uniform(0.45, 1.0)
        w, h = max(16, int(width * scale)), max(16, int(height * scale))
        left, top = rng.randint(0, width - w), rng.randint(0, height - h)
        crop = image.crop((left, top, left + w, top + h))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        yield crop.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


_WORDS = [
    "patient",
    "invoice",
    "total",
    "date",
    "report",
    "page",
    "summary",
    "results",
    "figure",
    "table",
    "account",
    "payment",
    "order",
    "number",
    "meeting",
    "agenda",
    "notes",
    "project",
    "budget",
    "review",
    "settings",
    "profile",
    "message",
    "reply",
    "share",
    "download",
    "update",
]


def _document(rng: random.Random) -> Image.Image:
    paper = tuple(rng.randint(225, 255) for _ in range(3))
    image = Image.new("RGB", (600, 800), paper)
    draw = ImageDraw.Draw(image)
    y = rng.randint(20, 60)
    while y < 760:
        size = rng.choice((14, 16, 18, 24))
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 10)))
        draw.text((rng.randint(20, 60), y), line, fill=(rng.randint(0, 60),) * 3, font=_font(size))
        y += size + rng.randint(6, 20)
    return image


def _screenshot(rng: random.Random) -> Image.Image:
    dark = rng.random() < 0.4
    background = (rng.randint(20, 50),) * 3 if dark else (rng.randint(235, 255),) * 3
    image = Image.new("RGB", (720, 1280), background)
    draw = ImageDraw.Draw(image)
    accent = tuple(rng.randint(0, 255) for _ in range(3))
    draw.rectangle((0, 0, 720, rng.randint(90, 160)), fill=accent)
    y = 200
    while y < 1200:
        if rng.random() < 0.3:
            box = tuple(rng.randint(120, 230) for _ in range(3))
            draw.rounded_rectangle((30, y, 690, y + 120), radius=20, fill=box)
            y += 140
        text_colour = (230,) * 3 if dark else (30,) * 3
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 6)))
        draw.text((40, y), words, fill=text_colour, font=_font(rng.choice((22, 28, 34))))
        y += rng.randint(50, 90)
    return image


def _abstract(rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (400, 400), tuple(rng.randint(0, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 25)):
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        x0, y0 = rng.randint(-100, 380), rng.randint(-100, 380)
        x1, y1 = x0 + rng.randint(20, 300), y0 + rng.randint(20, 300)
        shape = rng.choice(("ellipse", "rectangle", "line"))
        if shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=rng.randint(2, 30))
    return image.filter(ImageFilter.GaussianBlur(rng.choice((0, 0, 1, 4))))


def _texture_or_noise(rng: random.Random) -> tuple[str, Image.Image]:
    generator = np.random.default_rng(rng.randint(0, 2**31))
    choice = rng.choice(("noise", "gradient", "stripes", "checker", "plain"))
    size = INPUT_SIZE
    if choice == "noise":
        pixels = generator.integers(0, 256, (size, size, 3), dtype=np.uint8)
        if rng.random() < 0.5:
            pixels = np.repeat(pixels[..., :1], 3, axis=2)
        return "noise", Image.fromarray(pixels)
    if choice == "gradient":
        ramp = np.linspace(0, 1, size)[None, :, None]
        low, high = generator.integers(0, 256, 3), generator.integers(0, 256, 3)
        ramp_pixels = (low + (high - low) * ramp).repeat(size, axis=0)
        return "abstract", Image.fromarray(ramp_pixels.astype(np.uint8))
    if choice == "plain":
        return "abstract", Image.new("RGB", (size, size), tuple(generator.integers(0, 256, 3).tolist()))
    period = rng.randint(6, 60)
    index = np.arange(size)
    if choice == "stripes":
        mask = ((index[None, :] // period) % 2).repeat(size, axis=0)
    else:
        mask = ((index[:, None] // period + index[None, :] // period) % 2).astype(np.int64)
    a, b = generator.integers(0, 256, 3), generator.integers(0, 256, 3)
    pixels = np.where(mask[..., None] == 1, a, b)
    return "texture", Image.fromarray(pixels.astype(np.uint8))


def _plain_skin(rng: random.Random) -> Image.Image:
    """Skin of a random tone with no spot: shading, pores-scale noise, slight blur."""
    generator = np.random.default_rng(rng.randint(0, 2**31))
    tones = ((234, 192, 170), (224, 172, 140), (198, 134, 100), (160, 105, 75), (110, 70, 50), (240, 205, 190))
    tone = np.array(rng.choice(tones), dtype=np.float64) * rng.uniform(0.85, 1.1)
    size = INPUT_SIZE
    yy, xx = np.mgrid[0:size, 0:size] / size
    shading = 1 + rng.uniform(-0.25, 0.25) * (xx - 0.5) + rng.uniform(-0.25, 0.25) * (yy - 0.5)
    pixels = tone[None, None, :] * shading[..., None] + generator.normal(0, rng.uniform(2, 9), (size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))


def skin_without_lesion(photo: Image.Image, rng: random.Random) -> Image.Image:
    """A corner of a phone photo (away from the centred lesion), enlarged: skin with no spot."""
    width, height = photo.size
    side = int(min(width, height) * rng.uniform(0.22, 0.3))
    left = rng.choice((0, width - side))
    top = rng.choice((0, height - side))
    return photo.crop((left, top, left + side, top + side)).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)


def negative_pictures(seed: int = 0, crops_per_photo: int = 12, generated: int = 60) -> list[NegativePicture]:
    """Pictures that are not lesions, with their groups. Deterministic for a seed."""
    rng = random.Random(seed)
    pictures: list[NegativePicture] = []
    for path in _sample_photo_files():
        with Image.open(path) as image:
            source = image.convert("RGB")
        for crop in _random_crops(source, rng, crops_per_photo):
            pictures.append(NegativePicture(f"photo:{path.name}", "photo", crop))
    for index, face in enumerate(_faces()):
        pictures.append(NegativePicture(f"face:{index % 10}", "photo", face.resize((INPUT_SIZE, INPUT_SIZE))))
    for index in range(generated):
        pictures.append(NegativePicture(f"document:{index % 10}", "document", _document(rng)))
        pictures.append(NegativePicture(f"screenshot:{index % 10}", "screenshot", _screenshot(rng)))
        pictures.append(NegativePicture(f"abstract:{index % 10}", "abstract", _abstract(rng)))
        kind, texture = _texture_or_noise(rng)
        pictures.append(NegativePicture(f"{kind}:{index % 10}", kind, texture))
        pictures.append(NegativePicture(f"plain_skin:{index % 10}", "plain_skin", _plain_skin(rng)))
    return pictures
