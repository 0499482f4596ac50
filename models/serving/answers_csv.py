"""``skinsense classify --answers FILE.csv``: the patients' answers for the images on the command line.

The file has a header and one row per image. Columns: ``image`` (the file name as on the command line,
without folders), ``age`` (years), ``sex`` (male/female), ``body_site`` (shared.answers.BodySite's words),
``grew``, ``changed``, ``bleeds``, ``itches``, ``hurts``, ``raised`` (yes/no). A blank cell, a missing column
or a missing row means unknown. A bad value is an error naming its row and column.
"""

from __future__ import annotations

import csv
from pathlib import Path

from shared.answers import LESION_QUESTIONS, BodySite, PatientAnswers, Sex

COLUMNS = ("image", "age", "sex", "body_site", *LESION_QUESTIONS)
_YES_NO = {"yes": True, "no": False}


class AnswersFileError(ValueError):
    """A bad answers file; the message names the row (1 is the header) and the column."""


def _parse(row_number: int, column: str, value: str) -> object:
    text = value.strip().lower()
    if column == "age":
        if not text.isdigit() or not 0 <= int(text) <= 120:
            raise AnswersFileError(f"row {row_number}, column age: {value!r} is not an age in years (0-120)")
        return int(text)
    if column == "sex":
        if text not in {s.value for s in Sex}:
            raise AnswersFileError(f"row {row_number}, column sex: {value!r} is not one of male, female")
        return Sex(text)
    if column == "body_site":
        if text not in {s.value for s in BodySite}:
            sites = ", ".join(s.value for s in BodySite)
            raise AnswersFileError(f"row {row_number}, column body_site: {value!r} is not one of {sites}")
        return BodySite(text)
    if text not in _YES_NO:
        raise AnswersFileError(f"row {row_number}, column {column}: {value!r} is not yes or no")
    return _YES_NO[text]


def read_answers(path: Path) -> dict[str, PatientAnswers]:
    """Answers by image file name."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise AnswersFileError(f"cannot read {path}: {error.strerror or error}") from error
    with handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "image" not in reader.fieldnames:
            raise AnswersFileError(f"{path}: the header must name an 'image' column")
        unknown = [c for c in reader.fieldnames if c not in COLUMNS]
        if unknown:
            raise AnswersFileError(f"{path}: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}")
        answers: dict[str, PatientAnswers] = {}
        for row_number, row in enumerate(reader, start=2):
            image = (row.get("image") or "").strip()
            if not image:
                raise AnswersFileError(f"row {row_number}, column image: empty")
            if image in answers:
                raise AnswersFileError(f"row {row_number}, column image: {image!r} appears twice")
            values = {
                column: _parse(row_number, column, value)
                for column, value in row.items()
                if column != "image" and value is not None and value.strip()
            }
            answers[image] = PatientAnswers.model_validate(values)
    return answers
