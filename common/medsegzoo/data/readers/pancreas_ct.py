"""NIH Pancreas-CT (TCIA): DICOM series per patient + NIfTI labels.

As downloaded with the NBIA Data Retriever::

    Pancreas-CT/PANCREAS_0001/<study date and UID>/<series UID>/1-001.dcm ...
    TCIA_pancreas_labels-02-05-2017/label0001.nii.gz

The image of a case is the (single) DICOM series folder found below its ``PANCREAS_XXXX``
folder, read with ITK/GDCM; the label is ``labelXXXX.nii.gz`` anywhere in the tree. Patients
without a label file are kept as unlabeled. No official split (TCSeg uses 62 / 20 at random).
"""

from __future__ import annotations

import re
from pathlib import Path

from medsegzoo.data.readers.base import (
    NIFTI_RE,
    LayoutReader,
    ScannedCase,
    find_dirs,
    find_files,
    strip_nifti,
)
from medsegzoo.errors import LayoutError

_PATIENT = re.compile(r"PANCREAS_(\d{4})")
_LABEL = re.compile(r"label(\d{4})")
DICOM_SUFFIXES = (".dcm", ".dicom")


def _has_dicom(folder: Path) -> bool:
    return any(p.suffix.lower() in DICOM_SUFFIXES for p in folder.iterdir() if p.is_file())


def dicom_series_folders(folder: Path, max_depth: int = 4) -> list[Path]:
    """Folders at or below ``folder`` that directly hold DICOM (``.dcm``) files."""
    found = [folder] if _has_dicom(folder) else []
    return found + find_dirs(folder, _has_dicom, max_depth=max_depth)


class PancreasCTReader(LayoutReader):
    """NIH Pancreas-CT (pancreas, 82 scans)."""

    name = "pancreas_ct"
    title = "NIH Pancreas-CT"
    datasets = ("pancreas_ct",)
    expected = (
        "Pancreas-CT/PANCREAS_0001/.../<series>/*.dcm + TCIA_pancreas_labels-*/label0001.nii.gz"
    )
    official_split = (
        "none: every labeled case goes to training; patients without a label -> unlabeled"
    )

    @staticmethod
    def _patients(root: Path) -> list[Path]:
        return find_dirs(root, lambda d: bool(_PATIENT.fullmatch(d.name)), max_depth=3)

    def locate(self, root: Path) -> Path:
        if not self._patients(root):
            raise self.error(root)
        return root

    def scan(self, root: Path) -> list[ScannedCase]:
        labels = {
            _LABEL.fullmatch(strip_nifti(p.name)).group(1): p  # type: ignore[union-attr]
            for p in find_files(
                root,
                lambda p: (
                    bool(NIFTI_RE.search(p.name)) and bool(_LABEL.fullmatch(strip_nifti(p.name)))
                ),
                max_depth=3,
            )
        }
        cases = []
        for patient in self._patients(root):
            series = dicom_series_folders(patient)
            if len(series) != 1:
                what = (
                    "no DICOM series"
                    if not series
                    else f"{len(series)} DICOM series ({', '.join(str(s) for s in series[:3])})"
                )
                raise LayoutError(
                    f"{patient}: expected one DICOM series (a folder of .dcm files), found {what}"
                )
            number = _PATIENT.fullmatch(patient.name).group(1)  # type: ignore[union-attr]
            label = labels.pop(number, None)
            cases.append(
                ScannedCase(
                    patient.name,
                    series[0],
                    "pancreas_ct",
                    label=label,
                    split=None if label else "unlabeled",
                )
            )
        if labels:
            first = min(labels)
            raise LayoutError(
                f"{labels[first]}: label without a PANCREAS_{first} DICOM folder ({len(labels)} such)"
            )
        return cases
