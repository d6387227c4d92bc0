"""BTCV (Multi-Atlas Labeling Beyond the Cranial Vault, abdomen), two distributed forms.

* Synapse ``RawData.zip``: ``RawData/Training/img/img0001.nii.gz``,
  ``RawData/Training/label/label0001.nii.gz``, ``RawData/Testing/img/img0061.nii.gz``.
* MONAI's re-packaging (used by the Swin UNETR / universal-model papers):
  ``imagesTr/img0001.nii.gz``, ``labelsTr/label0001.nii.gz``, ``imagesTs/``, and
  ``dataset_0.json`` whose ``training`` / ``validation`` lists are the 24 / 6 split those papers
  report "BTCV validation" numbers on; when present it is read as the official split.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from medsegzoo.data.readers.base import (
    LayoutReader,
    ScannedCase,
    apply_official_split,
    find_dirs,
    nifti_files,
    paired_folder_cases,
)
from medsegzoo.errors import LayoutError

_IMAGE = re.compile(r"img(\d+)")
_PAIRS = {"img": "label", "imagesTr": "labelsTr", "imagesTs": "labelsTs"}


def _case_id(stem: str) -> str:
    match = _IMAGE.fullmatch(stem)
    return f"btcv_{match.group(1)}" if match else f"btcv_{stem}"


class BTCVReader(LayoutReader):
    """BTCV abdomen (13 organs)."""

    name = "btcv"
    title = "BTCV (Synapse multi-atlas abdomen)"
    datasets = ("btcv",)
    expected = "RawData/Training/img/img0001.nii.gz + RawData/Training/label/label0001.nii.gz (or imagesTr/ + labelsTr/)"
    official_split = (
        "dataset_0.json training/validation when present (MONAI's 24/6 split); "
        "Testing/ or imagesTs/ images (labels withheld) -> unlabeled_test"
    )

    @staticmethod
    def _image_dirs(root: Path) -> list[Path]:
        return find_dirs(
            root, lambda d: d.name in _PAIRS and bool(nifti_files(d, _IMAGE)), max_depth=4
        )

    def locate(self, root: Path) -> Path:
        if not self._image_dirs(root):
            raise self.error(root)
        return root

    def scan(self, root: Path) -> list[ScannedCase]:
        cases: list[ScannedCase] = []
        for image_dir in self._image_dirs(root):
            testing = image_dir.name == "imagesTs" or image_dir.parent.name.lower() == "testing"
            labels = image_dir.parent / _PAIRS[image_dir.name]
            cases += paired_folder_cases(
                image_dir,
                labels if labels.is_dir() else None,
                dataset="btcv",
                split="test" if testing else None,
                unlabeled_split="unlabeled_test" if testing else "unlabeled",
                case_id=_case_id,
                label_stem=lambda stem: stem.replace("img", "label", 1),
                image_pattern=_IMAGE.pattern,
                labels_required=not testing,
            )
        return apply_official_split(cases, self._official_split(root))

    @staticmethod
    def _official_split(root: Path) -> dict[str, str]:
        """case id -> split from MONAI's ``dataset_0.json`` (empty if absent)."""
        path = next(iter(sorted(root.rglob("dataset_0.json"))), None)
        if path is None:
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise LayoutError(f"{path}: cannot read the BTCV split file ({err})") from None
        out = {}
        for key in ("training", "validation"):
            for item in data.get(key) or []:
                image = item.get("image") if isinstance(item, dict) else None
                if isinstance(image, str):
                    stem = Path(image).name.split(".")[0]
                    out[_case_id(stem)] = key
        return out
