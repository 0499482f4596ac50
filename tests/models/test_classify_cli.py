"""``skinsense classify``: real images ranked, bad files reported, all in one process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from models.serving.classify import format_record
from models.serving.inference import read_metadata
from models.training.data import Sample, image_path
from shared.labels import CLASS_CODES, CLASS_NAMES, PhotoKind, melanoma_finding


def run_classify(*arguments: str) -> tuple[int, list[dict[str, Any]]]:
    completed = subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "classify", "--json", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return completed.returncode, [json.loads(line) for line in completed.stdout.splitlines()]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    real_jpeg = next((data_dir / "images").glob("*.jpg")).read_bytes()
    files = {
        "truncated": (folder / "truncated.jpg", real_jpeg[: len(real_jpeg) // 3]),
        "text": (folder / "notes.jpg", b"this is a text file, not a photo\n"),
        "empty": (folder / "empty.png", b""),
    }
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 150, 120)).save(tiny, "PNG")
    files["one_pixel"] = (folder / "one_pixel.png", tiny.getvalue())
    for path, content in files.values():
        path.write_bytes(content)
    return {name: path for name, (path, _) in files.items()}


def test_real_images_are_ranked_with_calibrated_probabilities(data_dir: Path, samples: list[Sample]) -> None:
    paths = [image_path(data_dir, s) for s in samples[:: len(samples) // 5][:5]]
    code, records = run_classify(*map(str, paths))
    assert code == 0
    assert [r["image"] for r in records] == [str(p) for p in paths]
    metadata = read_metadata()
    ranked = [r for r in records if "ranking" in r]
    assert len(ranked) >= 4, records  # the gates may refuse a rare dermoscopic image, never most of them
    for record in ranked:
        assert set(record) == {
            "image",
            "ranking",
            "risk",
            "forwarded",
            "melanoma_alert",
            "melanoma_finding",
            "photo_kind",
            "photo_kind_uncertain",
            "other_kind",
            "raised_by_other_kind",
            "answers_used",
            "skin_tone",
            "raised_by_skin_tone",
            "model_version",
        }
        assert record["answers_used"] == []
        skin_tone = record["skin_tone"]  # None where too little skin shows around the lesion
        if skin_tone is not None:
            assert set(skin_tone) == {"ita", "group", "outside_measured_range"}
            assert not (skin_tone["outside_measured_range"] and record["risk"] == "low"), record
        if record["raised_by_skin_tone"]:  # LOW became MEDIUM: only ever for skin outside the range
            assert skin_tone is not None and skin_tone["outside_measured_range"] and record["risk"] == "medium"
        assert record["photo_kind"] == "dermoscopic" or record["photo_kind_uncertain"], record
        threshold = metadata.kinds[PhotoKind(record["photo_kind"])].melanoma_alert_threshold
        ranking = record["ranking"]
        assert sorted(c["code"] for c in ranking) == sorted(CLASS_CODES)
        assert all(c["name"] == CLASS_NAMES[c["code"]] for c in ranking)
        probabilities = [c["probability"] for c in ranking]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert record["risk"] in ("low", "medium", "high")
        assert record["forwarded"] == (record["risk"] == "high"), "only HIGH goes to the clinicians"
        melanoma = next(c["probability"] for c in ranking if c["code"] == "mel")
        assert record["melanoma_alert"] == (melanoma >= threshold - 1e-6)
        assert record["model_version"] == metadata.version
        top = record["ranking"][0]["code"]
        assert record["melanoma_finding"] == melanoma_finding(record["melanoma_alert"], top).value


def test_bad_files_get_an_error_record_and_the_others_still_run(
    data_dir: Path, samples: list[Sample], bad_files: dict[str, Path]
) -> None:
    good = image_path(data_dir, samples[0])
    missing = bad_files["text"].parent / "does-not-exist.jpg"
    paths = [bad_files["truncated"], good, bad_files["text"], bad_files["empty"], bad_files["one_pixel"], missing]
    code, records = run_classify(*map(str, paths))
    assert code == 0, "one readable image is enough for success"
    by_image = {r["image"]: r for r in records}
    assert len(records) == len(paths)
    assert "ranking" in by_image[str(good)]
    expected = {
        "truncated": ("truncated", "corrupt"),
        "text": ("not an image", "not_an_image"),
        "empty": ("empty", "empty"),
        "one_pixel": ("1x1", "too_small"),
    }
    for name, (words, refusal_code) in expected.items():
        record = by_image[str(bad_files[name])]
        assert set(record) == {"image", "error", "code"}
        assert words in record["error"], record
        assert record["code"] == refusal_code, record
    assert "cannot read the file" in by_image[str(missing)]["error"]
    assert by_image[str(missing)]["code"] == "unreadable_file"


def test_human_readable_output_names_risk_and_classes(data_dir: Path, samples: list[Sample]) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "classify", str(image_path(data_dir, samples[0]))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0
    assert "risk" in completed.stdout and "Melanocytic nevus" in completed.stdout


def test_human_readable_output_says_when_the_skin_is_outside_the_measured_range() -> None:
    record = {
        "image": "spot.jpg",
        "risk": "medium",
        "photo_kind": "clinical",
        "melanoma_finding": "none",
        "ranking": [{"code": "nv", "name": "Melanocytic nevus", "probability": 0.9}],
        "skin_tone": {"ita": -41.3, "group": "dark", "outside_measured_range": True},
        "raised_by_skin_tone": True,
    }
    assert "skin tone dark (ITA -41): outside what this model was measured on: LOW became MEDIUM" in format_record(
        record
    )
    inside = {**record, "skin_tone": {"ita": 60.0, "group": "very_light", "outside_measured_range": False}}
    assert "skin tone" not in format_record(inside)
