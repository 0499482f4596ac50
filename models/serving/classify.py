"""``skinsense classify [--json] [--answers FILE.csv] IMAGE...``: screen and classify image files in one process."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.serving.answers_csv import AnswersFileError, read_answers
from models.serving.inference import ARTIFACT_DIR, RUNTIMES, Classifier
from models.serving.screening import screen_photo
from shared.answers import PatientAnswers
from shared.images import UnreadableImage


def classify_files(
    paths: Sequence[Path], classifier: Classifier, answers: dict[str, PatientAnswers] | None = None
) -> list[dict[str, Any]]:
    """One record per path, in order: the prediction, or ``{"image", "error", "code"}`` for a refused file.

    Each file goes through ``screen_photo``, the same function the worker calls for a patient's photo,
    with the answers given for its file name (none: the photo alone).
    """
    records: list[dict[str, Any]] = []
    for path in paths:
        record: dict[str, Any] = {"image": str(path)}
        try:
            photo_answers = (answers or {}).get(path.name)
            record.update(screen_photo(path.read_bytes(), classifier, photo_answers).to_dict())
        except UnreadableImage as error:
            record.update(error=error.reason, code=error.code)
        except OSError as error:
            record.update(error=f"cannot read the file: {error.strerror or error}", code="unreadable_file")
        records.append(record)
    return records


def format_record(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"{record['image']}: cannot classify: {record['error']}"
    finding = {
        "likely": "  ** MELANOMA ALERT: melanoma likely **",
        "cannot_rule_out": "  ** MELANOMA ALERT: cannot be ruled out **",
    }
    lines = [
        f"{record['image']}: risk {record['risk'].upper()} ({record['photo_kind']} photo)"
        + finding.get(record["melanoma_finding"], "")
    ]
    lines += [f"  {c['probability']:6.1%}  {c['name']} ({c['code']})" for c in record["ranking"]]
    skin_tone = record.get("skin_tone")
    if skin_tone and skin_tone["outside_measured_range"]:
        never_low = ": LOW became MEDIUM" if record.get("raised_by_skin_tone") else ""
        lines.append(
            f"  skin tone {skin_tone['group']} (ITA {skin_tone['ita']:.0f}): outside what this model was measured on"
            f"{never_low}"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None, help="default: the artifact's")
    parser.add_argument("--artifact-dir", type=Path, default=ARTIFACT_DIR)
    parser.add_argument(
        "--answers",
        type=Path,
        default=None,
        metavar="FILE.csv",
        help="patients' answers per image (see models/serving/answers_csv.py)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        answers = read_answers(args.answers) if args.answers else None
    except AnswersFileError as error:
        print(f"skinsense classify: {error}", file=sys.stderr)
        return 2
    classifier = Classifier(args.artifact_dir, runtime=args.runtime)
    records = classify_files(args.images, classifier, answers)
    for record in records:
        print(json.dumps(record) if args.json else format_record(record))
    sys.stdout.flush()
    return 1 if all("error" in r for r in records) else 0
