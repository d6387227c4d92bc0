"""KiTS19: the ``kits19`` repository's ``data/case_XXXXX/imaging.nii.gz`` + ``segmentation.nii.gz``.

Facts: cases 0-209 carry ``segmentation.nii.gz`` (1 kidney, 2 tumor; both kidneys in one
label), cases 210-299 are the challenge test set (imaging only). ``data/kits.json`` holds the
clinical table; ``age_at_nephrectomy`` and ``gender`` are read when it is present.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from medsegzoo.data.readers.base import LayoutReader, ScannedCase, normalise_sex, parse_age
from medsegzoo.errors import LayoutError

_CASE = re.compile(r"case_\d{5}")
# the first case of the test set (labels withheld); cases before it are labeled
FIRST_TEST_CASE = 210


def _number(case_id: str) -> int:
    return int(case_id.split("_")[1])


class KiTS19Reader(LayoutReader):
    """KiTS19 (kidney + kidney tumor)."""

    name = "kits19"
    title = "KiTS19"
    datasets = ("kits19",)
    expected = "data/case_XXXXX/imaging.nii.gz + data/case_XXXXX/segmentation.nii.gz"
    official_split = (
        "cases with segmentation.nii.gz -> training; imaging-only cases (210-299) -> unlabeled_test"
    )

    @staticmethod
    def _case_dirs(folder: Path) -> list[Path]:
        return sorted(
            p
            for p in folder.iterdir()
            if p.is_dir() and _CASE.fullmatch(p.name) and (p / "imaging.nii.gz").is_file()
        )

    def looks_like(self, folder: Path) -> bool:
        return bool(self._case_dirs(folder))

    def scan(self, root: Path) -> list[ScannedCase]:
        clinical = self._clinical(root / "kits.json")
        cases = []
        for case_dir in self._case_dirs(root):
            label = case_dir / "segmentation.nii.gz"
            has_label = label.is_file()
            cases.append(
                ScannedCase(
                    case_dir.name,
                    case_dir / "imaging.nii.gz",
                    "kits19",
                    label=label if has_label else None,
                    split=None if has_label else "unlabeled_test",
                    metadata=clinical.get(case_dir.name, {}),
                    # cases 0-209 are the labeled training set; 210-299 are imaging only
                    missing_label=label if not has_label and _number(case_dir.name) < FIRST_TEST_CASE else None,
                )
            )
        return cases

    @staticmethod
    def _clinical(path: Path) -> dict[str, dict[str, Any]]:
        if not path.is_file():
            return {}
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise LayoutError(f"{path}: cannot read the KiTS19 clinical table ({err})") from None
        out: dict[str, dict[str, Any]] = {}
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and isinstance(row.get("case_id"), str):
                out[row["case_id"]] = {
                    "age": parse_age(row.get("age_at_nephrectomy")),
                    "sex": normalise_sex(row.get("gender")),
                }
        return out
