"""AMOS 2022: ``amos22/`` with ``imagesTr``/``labelsTr``, ``imagesVa``/``labelsVa``, ``imagesTs``.

Facts of ``amos22.zip`` (Zenodo 7262581): file names ``amos_XXXX.nii.gz``; ids below 500 are CT,
500 and above MR (both share one 15-class map); the optional
``labeled_data_meta_0000_0599.csv`` (a separate download, usually placed next to ``amos22/``)
holds per-case ``Patient's Sex``, ``Patient's Age`` ("046Y"), ``Manufacturer``,
``Manufacturer's Model Name`` and ``Site``.
"""

from __future__ import annotations

import re
from pathlib import Path

from medsegzoo.data.readers.base import (
    LayoutReader,
    ScannedCase,
    nifti_files,
    normalise_sex,
    paired_folder_cases,
    parse_age,
    read_csv_rows,
)

_IMAGE = re.compile(r"amos_(\d+)")
_META = "labeled_data_meta_0000_0599.csv"
MR_FIRST_ID = 500


def _dataset(stem: str) -> str:
    match = _IMAGE.fullmatch(stem)
    return "amos_mr" if match and int(match.group(1)) >= MR_FIRST_ID else "amos"


class AMOSReader(LayoutReader):
    """AMOS 2022, CT and MR."""

    name = "amos"
    title = "AMOS 2022"
    datasets = ("amos", "amos_mr")
    expected = (
        "amos22/ with imagesTr/, labelsTr/, imagesVa/, labelsVa/, imagesTs/ (amos_XXXX.nii.gz)"
    )
    official_split = "Tr -> training, Va -> validation, Ts (labels withheld) -> unlabeled_test"

    def looks_like(self, folder: Path) -> bool:
        return (folder / "imagesTr").is_dir() and bool(nifti_files(folder / "imagesTr", _IMAGE))

    def scan(self, root: Path) -> list[ScannedCase]:
        cases: list[ScannedCase] = []
        for suffix, split in (("Tr", "training"), ("Va", "validation"), ("Ts", "test")):
            labels = root / f"labels{suffix}"
            cases += paired_folder_cases(
                root / f"images{suffix}",
                labels if labels.is_dir() else None,
                dataset=_dataset,
                split=split,
                unlabeled_split="unlabeled_test" if suffix == "Ts" else "unlabeled",
                image_pattern=_IMAGE.pattern,
                labels_required=suffix != "Ts",
            )
        meta = self._metadata(root)
        for case in cases:
            case.metadata.update(meta.get(case.case_id, {}))
        return cases

    @staticmethod
    def _metadata(root: Path) -> dict[str, dict[str, object]]:
        path = next((p / _META for p in (root, root.parent) if (p / _META).is_file()), None)
        if path is None:
            return {}
        out: dict[str, dict[str, object]] = {}
        for row in read_csv_rows(path):
            try:
                case_id = f"amos_{int(float(row.get('amos_id', ''))):04d}"
            except ValueError:
                continue
            out[case_id] = {
                "sex": normalise_sex(row.get("Patient's Sex")),
                "age": parse_age(row.get("Patient's Age")),
                "manufacturer": row.get("Manufacturer") or None,
                "scanner": row.get("Manufacturer's Model Name") or None,
                "site": row.get("Site") or None,
            }
        return out
