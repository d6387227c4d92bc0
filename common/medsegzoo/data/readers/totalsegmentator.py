"""TotalSegmentator (CT): ``sXXXX/ct.nii.gz`` + ``sXXXX/segmentations/<class>.nii.gz`` + ``meta.csv``.

Facts of the Zenodo release (v2.0.1): one binary mask per class (117 files in v2, 104 in v1,
always present, empty when the structure is absent); ``meta.csv`` is semicolon-separated UTF-8
with a BOM and the columns ``image_id;age;gender;institute;study_type;split;manufacturer;
scanner_model;kvp;pathology;pathology_location``; ``split`` is ``train``/``val``/``test``
(the official split, 1082/57/89 in v2.0.1). The mask file names tell v1 from v2.
"""

from __future__ import annotations

import re
from pathlib import Path

from medsegzoo.data.readers.base import (
    LayoutReader,
    ScannedCase,
    choose_mask_dataset,
    mask_folder_case,
    nifti_files,
    normalise_sex,
    parse_age,
    read_csv_rows,
    strip_nifti,
)

_CASE = re.compile(r"s\d+")
_SPLITS = {"train": "training", "val": "validation", "validation": "validation", "test": "test"}


class TotalSegmentatorReader(LayoutReader):
    """TotalSegmentator CT, v2 (official order) or v1 (read with STU-Net's alphabetical map)."""

    name = "totalsegmentator"
    title = "TotalSegmentator"
    datasets = ("totalsegmentator", "totalsegmentator_stunet")
    expected = "sXXXX/ct.nii.gz + sXXXX/segmentations/<class>.nii.gz (+ meta.csv)"
    official_split = "meta.csv column 'split': train -> training, val -> validation, test -> test"

    @staticmethod
    def _case_dirs(folder: Path) -> list[Path]:
        return sorted(
            p
            for p in folder.iterdir()
            if p.is_dir() and _CASE.fullmatch(p.name) and (p / "ct.nii.gz").is_file()
        )

    def looks_like(self, folder: Path) -> bool:
        return bool(self._case_dirs(folder))

    def scan(self, root: Path) -> list[ScannedCase]:
        case_dirs = self._case_dirs(root)
        stems = {strip_nifti(p.name) for d in case_dirs for p in nifti_files(d / "segmentations")}
        dataset = choose_mask_dataset(stems, self.datasets, root)
        meta = self._metadata(root / "meta.csv")
        cases = []
        for case_dir in case_dirs:
            case = mask_folder_case(case_dir, "ct.nii.gz", dataset)
            row = meta.get(case.case_id, {})
            split = _SPLITS.get(row.pop("split", "") or "")
            if case.is_labeled and split:
                case.split = split
            case.metadata.update(row)
            cases.append(case)
        return cases

    @staticmethod
    def _metadata(path: Path) -> dict[str, dict[str, object]]:
        if not path.is_file():
            return {}
        out: dict[str, dict[str, object]] = {}
        for row in read_csv_rows(path):
            case_id = row.get("image_id", "")
            if not case_id:
                continue
            out[case_id] = {
                "age": parse_age(row.get("age")),
                "sex": normalise_sex(row.get("gender")),
                "site": row.get("institute") or None,
                "manufacturer": row.get("manufacturer") or None,
                "scanner": row.get("scanner_model") or None,
                "study_type": row.get("study_type") or None,
                "pathology": row.get("pathology") or None,
                "split": row.get("split", "").strip().lower(),
            }
        return out
