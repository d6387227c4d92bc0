"""CT-ORG (TCIA): ``OrganSegmentations/volume-N.nii.gz`` + ``labels-N.nii.gz``.

Labels: 1 liver, 2 bladder, 3 lungs, 4 kidneys, 5 bone, 6 brain (lungs and kidneys are one
label each; conversions split them left/right). The data description names volumes 0-20 as
the test set (manually annotated, lungs and bones included); those are read as the official
test split, the other 119 as training.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.readers.base import LayoutReader, ScannedCase, numbered_pairs

TEST_CASES = range(21)


class CTORGReader(LayoutReader):
    """CT-ORG (6 organ labels)."""

    name = "ct_org"
    title = "CT-ORG"
    datasets = ("ct_org",)
    expected = "OrganSegmentations/volume-N.nii.gz + OrganSegmentations/labels-N.nii.gz"
    official_split = "volumes 0-20 -> test, the others -> training"

    def locate(self, root: Path) -> Path:
        pairs = numbered_pairs(root, "volume-", "labels-")
        if not any(label is not None for _, _, label in pairs):
            raise self.error(root)
        return root

    def scan(self, root: Path) -> list[ScannedCase]:
        return [
            ScannedCase(
                f"ct_org_{n}",
                image,
                "ct_org",
                label=label,
                split=("test" if n in TEST_CASES else "training") if label else "unlabeled",
            )
            for n, image, label in numbered_pairs(root, "volume-", "labels-")
        ]
