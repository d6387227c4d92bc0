"""CHAOS (Combined Healthy Abdominal Organ Segmentation): DICOM series + PNG ground truth.

As distributed (Zenodo 3431873, ``CHAOS_Train_Sets.zip`` / ``CHAOS_Test_Sets.zip``)::

    Train_Sets/CT/<n>/DICOM_anon/*.dcm              Train_Sets/CT/<n>/Ground/*.png   (liver = 255)
    Train_Sets/MR/<n>/T2SPIR/DICOM_anon/*.dcm       Train_Sets/MR/<n>/T2SPIR/Ground/*.png
    Train_Sets/MR/<n>/T1DUAL/DICOM_anon/InPhase/    Train_Sets/MR/<n>/T1DUAL/Ground/*.png
    Train_Sets/MR/<n>/T1DUAL/DICOM_anon/OutPhase/   (the T1 in- and out-phase series share one Ground)

MR ground truth stores grey values (liver 63, right kidney 126, left kidney 189, spleen 252),
kept as they are (data set ``chaos_mr``); CT stores the liver as 255 (``chaos_ct``). Each MR
sequence is its own case (``chaos_mr_<n>_t2spir``, ``..._t1dual_in``, ``..._t1dual_out``).
The datalist names the DICOM folder as ``image`` and the PNG folder as ``label``;
:func:`medsegzoo.data.formats.read_png_stack` stacks the PNGs on the series' grid. Test-set
cases have no Ground folder and become unlabeled test images.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.readers.base import LayoutReader, ScannedCase, find_dirs

# (sub-path of the image series, sub-path of the ground truth, case-id suffix, sequence name)
_MR_SERIES = (
    ("T2SPIR/DICOM_anon", "T2SPIR/Ground", "t2spir", "T2SPIR"),
    ("T1DUAL/DICOM_anon/InPhase", "T1DUAL/Ground", "t1dual_in", "T1DUAL in-phase"),
    ("T1DUAL/DICOM_anon/OutPhase", "T1DUAL/Ground", "t1dual_out", "T1DUAL out-phase"),
)


def _numbered(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )


class CHAOSReader(LayoutReader):
    """CHAOS CT (liver) and MR (liver, kidneys, spleen)."""

    name = "chaos"
    title = "CHAOS"
    datasets = ("chaos_ct", "chaos_mr")
    expected = (
        "Train_Sets/CT/<n>/DICOM_anon/ + Ground/, Train_Sets/MR/<n>/T2SPIR/DICOM_anon/ + Ground/"
    )
    official_split = "Train_Sets cases -> training; Test_Sets cases (no Ground) -> unlabeled_test"

    @staticmethod
    def _modality_dirs(root: Path) -> list[Path]:
        return find_dirs(root, lambda d: d.name in ("CT", "MR") and bool(_numbered(d)), max_depth=3)

    def locate(self, root: Path) -> Path:
        if not self._modality_dirs(root):
            raise self.error(root)
        return root

    def scan(self, root: Path) -> list[ScannedCase]:
        cases = []
        for modality_dir in self._modality_dirs(root):
            for patient in _numbered(modality_dir):
                if modality_dir.name == "CT":
                    series = [("DICOM_anon", "Ground", "", None)]
                    prefix, dataset = f"chaos_ct_{patient.name}", "chaos_ct"
                else:
                    series = [(s, g, f"_{suffix}", seq) for s, g, suffix, seq in _MR_SERIES]
                    prefix, dataset = f"chaos_mr_{patient.name}", "chaos_mr"
                for image_sub, ground_sub, suffix, sequence in series:
                    image = patient / image_sub
                    if not image.is_dir():
                        continue
                    ground = patient / ground_sub
                    labeled = ground.is_dir() and any(
                        p.suffix.lower() == ".png" for p in ground.iterdir()
                    )
                    cases.append(
                        ScannedCase(
                            prefix + suffix,
                            image,
                            dataset,
                            label=ground if labeled else None,
                            split=None if labeled else "unlabeled_test",
                            metadata={"sequence": sequence} if sequence else {},
                            # the Train_Sets cases all have Ground (the test sets have none)
                            missing_label=ground if not labeled and "Train_Sets" in patient.parts else None,
                        )
                    )
        return cases
