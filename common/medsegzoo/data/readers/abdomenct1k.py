"""AbdomenCT-1K: ``AbdomenCT-1K-ImagePart{1,2,3}/Case_XXXXX_0000.nii.gz`` + ``Mask/Case_XXXXX.nii.gz``.

Labels: 1 liver, 2 kidney (both sides in one label), 3 spleen, 4 pancreas. The image parts
are separate downloads; the tree is searched for images (``_0000`` suffix) and masks (same
stem without it). Images without a mask are kept as unlabeled. No official split file.
"""

from __future__ import annotations

import re
from pathlib import Path

from medsegzoo.data.readers.base import NIFTI_RE, LayoutReader, ScannedCase, find_files, strip_nifti
from medsegzoo.errors import LayoutError

_IMAGE = re.compile(r"Case_(\d+)_0000")
_MASK = re.compile(r"Case_(\d+)")


class AbdomenCT1KReader(LayoutReader):
    """AbdomenCT-1K (liver, kidney, spleen, pancreas)."""

    name = "abdomenct1k"
    title = "AbdomenCT-1K"
    datasets = ("abdomenct1k",)
    expected = "AbdomenCT-1K-ImagePart1/Case_00001_0000.nii.gz + Mask/Case_00001.nii.gz"
    official_split = "none: every labeled case goes to training; images without a mask -> unlabeled"

    @staticmethod
    def _files(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
        images: dict[str, Path] = {}
        masks: dict[str, Path] = {}
        for path in find_files(root, lambda p: bool(NIFTI_RE.search(p.name)), max_depth=4):
            stem = strip_nifti(path.name)
            for regex, table in ((_IMAGE, images), (_MASK, masks)):
                match = regex.fullmatch(stem)
                if match:
                    if match.group(1) in table:
                        raise LayoutError(
                            f"{path}: case {match.group(1)} appears twice (also {table[match.group(1)]})"
                        )
                    table[match.group(1)] = path
                    break
        return images, masks

    def locate(self, root: Path) -> Path:
        images, masks = self._files(root)
        if not set(images) & set(masks):
            raise self.error(root)
        return root

    def scan(self, root: Path) -> list[ScannedCase]:
        images, masks = self._files(root)
        orphans = sorted(set(masks) - set(images))
        if orphans:
            raise LayoutError(
                f"{masks[orphans[0]]}: mask without an image Case_{orphans[0]}_0000.nii.gz ({len(orphans)} such)"
            )
        return [
            ScannedCase(
                f"abdomenct1k_{number}",
                images[number],
                "abdomenct1k",
                label=masks.get(number),
                split=None if number in masks else "unlabeled",
            )
            for number in sorted(images)
        ]
