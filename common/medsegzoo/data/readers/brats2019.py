"""BraTS 2019: ``MICCAI_BraTS_2019_Data_Training/{HGG,LGG}/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``.

The FLAIR volume is the image (the modality TCSeg segments the whole tumor on); the label
map keeps BraTS' native values (1 necrotic/non-enhancing core, 2 edema, 4 enhancing tumor;
no 3) so that the conversion to the whole tumor (labels 1, 2 and 4 merged) happens in
:mod:`medsegzoo.taxonomy`, not here. The glioma grade (HGG/LGG folder) is kept as metadata.
Validation-set cases (``MICCAI_BraTS_2019_Data_Validation``, no ``_seg``) are unlabeled test
images. No official split of the labeled cases.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.readers.base import LayoutReader, ScannedCase, find_files

_IMAGE_SUFFIX = "_flair.nii.gz"


class BraTS2019Reader(LayoutReader):
    """BraTS 2019 (FLAIR image, native tumor sub-region labels)."""

    name = "brats2019"
    title = "BraTS 2019"
    datasets = ("brats2019",)
    expected = "MICCAI_BraTS_2019_Data_Training/HGG/<case>/<case>_flair.nii.gz + <case>_seg.nii.gz"
    official_split = "none for labeled cases (-> training); cases without _seg (validation set) -> unlabeled_test"

    @staticmethod
    def _images(root: Path) -> list[Path]:
        return find_files(
            root,
            lambda p: (
                p.name.endswith(_IMAGE_SUFFIX) and p.parent.name == p.name[: -len(_IMAGE_SUFFIX)]
            ),
            max_depth=4,
        )

    def locate(self, root: Path) -> Path:
        if not self._images(root):
            raise self.error(root)
        return root

    def scan(self, root: Path) -> list[ScannedCase]:
        cases = []
        for image in self._images(root):
            case_id = image.parent.name
            label = image.parent / f"{case_id}_seg.nii.gz"
            grade = image.parent.parent.name.upper()
            cases.append(
                ScannedCase(
                    case_id,
                    image,
                    "brats2019",
                    label=label if label.is_file() else None,
                    split=None if label.is_file() else "unlabeled_test",
                    metadata={"grade": grade} if grade in {"HGG", "LGG"} else {},
                    # the training set (HGG/, LGG/) is labeled; the validation set is not
                    missing_label=label if grade in {"HGG", "LGG"} and not label.is_file() else None,
                )
            )
        return cases
