"""LiTS (Liver Tumor Segmentation, 2017): ``volume-N.nii`` + ``segmentation-N.nii``.

As distributed: ``Training Batch 1/`` and ``Training Batch 2/`` hold the 131 labeled volumes
(0 background, 1 liver, 2 tumor), ``LITS-Challenge-Test-Data/test-volume-N.nii`` the 70 test
volumes (labels withheld). Files may be ``.nii`` or ``.nii.gz``; the tree is searched.
"""

from __future__ import annotations

import re
from pathlib import Path

from medsegzoo.data.readers.base import (
    NIFTI_RE,
    LayoutReader,
    ScannedCase,
    find_files,
    numbered_pairs,
    strip_nifti,
)

_TEST = re.compile(r"test-volume-(\d+)")


class LiTSReader(LayoutReader):
    """LiTS (liver + liver tumor)."""

    name = "lits"
    title = "LiTS"
    datasets = ("lits",)
    expected = "Training Batch 1/volume-N.nii + segmentation-N.nii (and LITS-Challenge-Test-Data/test-volume-N.nii)"
    official_split = (
        "labeled volumes -> training; test-volume-N (labels withheld) -> unlabeled_test"
    )

    def locate(self, root: Path) -> Path:
        pairs = numbered_pairs(root, "volume-", "segmentation-")
        if not any(label is not None for _, _, label in pairs):
            raise self.error(root)
        return root

    def scan(self, root: Path) -> list[ScannedCase]:
        # every training volume-N has its segmentation-N (test volumes are test-volume-N)
        cases = [
            ScannedCase(
                f"lits_{n}",
                image,
                "lits",
                label=label,
                split=None if label else "unlabeled",
                missing_label=None if label else image.with_name(image.name.replace("volume-", "segmentation-", 1)),
            )
            for n, image, label in numbered_pairs(root, "volume-", "segmentation-")
        ]
        for path in find_files(root, lambda p: bool(NIFTI_RE.search(p.name)), max_depth=4):
            match = _TEST.fullmatch(strip_nifti(path.name))
            if match:
                cases.append(
                    ScannedCase(
                        f"lits_test_{int(match.group(1))}", path, "lits", split="unlabeled_test"
                    )
                )
        return cases
