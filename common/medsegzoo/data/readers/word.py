"""WORD (Whole abdominal ORgan Dataset): ``WORD-V0.1.0/`` with ``imagesTr``/``labelsTr``,
``imagesVal``/``labelsVal`` and ``imagesTs`` (+ ``labelsTs`` in releases that include them).

Files are ``word_XXXX.nii.gz``; the official split is 100 training / 20 validation / 30 test.
"""

from __future__ import annotations

import re
from pathlib import Path

from medsegzoo.data.readers.base import LayoutReader, ScannedCase, nifti_files, paired_folder_cases

_IMAGE = re.compile(r"word_(\d+)")


class WORDReader(LayoutReader):
    """WORD, 16 abdominal organs."""

    name = "word"
    title = "WORD"
    datasets = ("word",)
    expected = "WORD-V0.1.0/ with imagesTr/, labelsTr/, imagesVal/, labelsVal/, imagesTs/ (word_XXXX.nii.gz)"
    official_split = (
        "Tr -> training, Val -> validation, Ts -> test (unlabeled_test without labelsTs/)"
    )

    def looks_like(self, folder: Path) -> bool:
        return any(nifti_files(folder / d, _IMAGE) for d in ("imagesTr", "imagesVal", "imagesTs"))

    def scan(self, root: Path) -> list[ScannedCase]:
        cases: list[ScannedCase] = []
        for suffix, split in (("Tr", "training"), ("Val", "validation"), ("Ts", "test")):
            labels = root / f"labels{suffix}"
            cases += paired_folder_cases(
                root / f"images{suffix}",
                labels if labels.is_dir() else None,
                dataset="word",
                split=split,
                unlabeled_split="unlabeled_test" if suffix == "Ts" else "unlabeled",
                image_pattern=_IMAGE.pattern,
                labels_required=suffix != "Ts",
            )
        return cases
