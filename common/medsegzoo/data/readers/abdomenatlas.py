"""AbdomenAtlas 1.0 / 1.1 (Touchstone training set): ``BDMAP_XXXXXXXX/ct.nii.gz`` +
``BDMAP_XXXXXXXX/segmentations/<class>.nii.gz`` (+ ``combined_labels.nii.gz``, not used).

Facts: one binary mask per class; 1.0 has 9 classes (``aorta``, ``gall_bladder``,
``kidney_left``, ``kidney_right``, ``liver``, ``pancreas``, ``postcava``, ``spleen``,
``stomach``), 1.1 adds 16 more; the file names tell the two apart. The per-class masks are
read, not ``combined_labels.nii.gz``: where masks overlap, the combined map keeps only the
last class written. No official split (Touchstone tests on other data sets).
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.readers.base import (
    LayoutReader,
    ScannedCase,
    choose_mask_dataset,
    mask_folder_case,
    nifti_files,
    strip_nifti,
)

_IMAGE = "ct.nii.gz"


class AbdomenAtlasReader(LayoutReader):
    """AbdomenAtlas (per-class masks, 9 or 25 classes)."""

    name = "abdomenatlas"
    title = "AbdomenAtlas"
    datasets = ("abdomenatlas", "abdomenatlas1_1")
    expected = "BDMAP_XXXXXXXX/ct.nii.gz + BDMAP_XXXXXXXX/segmentations/<class>.nii.gz"

    @staticmethod
    def _case_dirs(folder: Path) -> list[Path]:
        """Case folders holding ``ct.nii.gz`` (each must hold its masks)."""
        return sorted(
            p
            for p in folder.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / _IMAGE).is_file()
        )

    def looks_like(self, folder: Path) -> bool:
        return any(
            d.name.startswith("BDMAP_") and (d / "segmentations").is_dir()
            for d in self._case_dirs(folder)
        )

    def scan(self, root: Path) -> list[ScannedCase]:
        case_dirs = self._case_dirs(root)
        stems = {strip_nifti(p.name) for d in case_dirs for p in nifti_files(d / "segmentations")}
        dataset = choose_mask_dataset(stems, self.datasets, root)
        # every AbdomenAtlas case is labeled: a case without masks lost them
        return [mask_folder_case(d, _IMAGE, dataset, masks_required=True) for d in case_dirs]
