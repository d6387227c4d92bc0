"""FLARE 2022: labeled, unlabeled and validation CT scans, images with an ``_0000`` suffix.

As distributed (grand-challenge download, archives extracted in place)::

    Training/FLARE22_LabeledCase50/images/FLARE22_Tr_0001_0000.nii.gz
    Training/FLARE22_LabeledCase50/labels/FLARE22_Tr_0001.nii.gz
    Training/FLARE22_UnlabeledCase1-1000/Case_00001_0000.nii.gz    (2000 unlabeled scans)
    Validation/FLARETs_0001_0000.nii.gz                              (labels withheld)

Folder names differ between mirrors, so the whole tree is searched: an image is any
``<stem>_0000.nii.gz``; its label is ``<stem>.nii.gz`` anywhere in the tree. Unlabeled images
under ``Validation`` (or named ``FLARETs_*``) are test images; the others are the unlabeled
training pool of the semi-supervised task.
"""

from __future__ import annotations

import re
from pathlib import Path

from medsegzoo.data.io import is_nifti
from medsegzoo.data.readers.base import LayoutReader, ScannedCase, find_files, strip_nifti
from medsegzoo.errors import LayoutError

_LABELED = re.compile(r"FLARE22_Tr_\d+_0000")
_IMAGE_SUFFIX = "_0000"


class FLARE22Reader(LayoutReader):
    """FLARE 2022 (13 organs, 50 labeled + 2000 unlabeled)."""

    name = "flare22"
    title = "FLARE 2022"
    datasets = ("flare22",)
    expected = (
        "Training/FLARE22_LabeledCase50/images/FLARE22_Tr_0001_0000.nii.gz + .../labels/FLARE22_Tr_0001.nii.gz "
        "(unlabeled Case_XXXXX_0000.nii.gz and Validation/FLARETs_XXXX_0000.nii.gz optional)"
    )
    official_split = (
        "labeled cases -> training; unlabeled training scans -> unlabeled; Validation/ scans -> unlabeled_test "
        "(or validation when their labels are present)"
    )

    def locate(self, root: Path) -> Path:
        if not find_files(
            root, lambda p: bool(_LABELED.fullmatch(strip_nifti(p.name))), max_depth=5
        ):
            raise self.error(root)
        return root

    def scan(self, root: Path) -> list[ScannedCase]:
        files = find_files(root, lambda p: is_nifti(p.name), max_depth=6)
        images = [p for p in files if strip_nifti(p.name).endswith(_IMAGE_SUFFIX)]
        by_stem: dict[str, Path] = {}
        for path in files:
            stem = strip_nifti(path.name)
            if not stem.endswith(_IMAGE_SUFFIX):
                if stem in by_stem:
                    raise LayoutError(
                        f"{path}: a second label named {stem} (first: {by_stem[stem]})"
                    )
                by_stem[stem] = path
        cases = []
        for image in images:
            stem = strip_nifti(image.name)[: -len(_IMAGE_SUFFIX)]
            label = by_stem.pop(stem, None)
            is_validation = "Validation" in image.parts or stem.startswith("FLARETs")
            if label is not None:
                split = "validation" if is_validation else None
            else:
                split = "unlabeled_test" if is_validation else "unlabeled"
            case_id = stem if stem.upper().startswith("FLARE") else f"flare22_{stem}"
            # the 50 FLARE22_Tr cases are the labeled ones: one without its label lost it
            missing = (
                image.parent.parent / "labels" / f"{stem}.nii.gz"
                if label is None and not is_validation and _LABELED.fullmatch(f"{stem}{_IMAGE_SUFFIX}")
                else None
            )
            cases.append(
                ScannedCase(case_id, image, "flare22", label=label, split=split, missing_label=missing)
            )
        if by_stem:
            names = sorted(by_stem)
            raise LayoutError(
                f"{root}: label files without an image named <stem>_0000.nii.gz: "
                f"{', '.join(str(by_stem[n]) for n in names[:5])}"
                + (f" ... ({len(names) - 5} more)" if len(names) > 5 else "")
            )
        return cases
