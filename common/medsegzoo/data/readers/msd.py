"""Medical Segmentation Decathlon: ``TaskNN_Name/dataset.json`` + ``imagesTr``, ``labelsTr``, ``imagesTs``.

Facts of the distributed tar files: ``dataset.json`` lists ``training`` as
``{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}`` and ``test`` as plain
image paths (labels withheld); its ``name`` is the task ("Spleen", "HepaticVessel"); the tars
carry macOS ``._*`` files next to every volume, which are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medsegzoo.data.readers.base import LayoutReader, ScannedCase, paired_folder_cases, strip_nifti
from medsegzoo.errors import LayoutError, MedSegZooError
from medsegzoo.taxonomy import get_dataset


class MSDReader(LayoutReader):
    """Any MSD task; the task (data set) comes from the folder name or ``dataset.json``."""

    name = "msd"
    title = "Medical Segmentation Decathlon"
    datasets = (
        "msd_brain_tumour",
        "msd_heart",
        "msd_liver",
        "msd_hippocampus",
        "msd_prostate",
        "msd_lung",
        "msd_pancreas",
        "msd_hepatic_vessel",
        "msd_spleen",
        "msd_colon",
    )
    expected = "TaskNN_Name/dataset.json with imagesTr/, labelsTr/ (and imagesTs/)"
    official_split = (
        "dataset.json 'training' -> training; 'test' (labels withheld) -> unlabeled_test"
    )

    def looks_like(self, folder: Path) -> bool:
        return (
            (folder / "dataset.json").is_file()
            and (folder / "imagesTr").is_dir()
            and self._task(folder) is not None
        )

    @staticmethod
    def _read_json(folder: Path) -> dict[str, Any]:
        path = folder / "dataset.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise LayoutError(f"{path}: cannot read dataset.json ({err})") from None
        if not isinstance(data, dict):
            raise LayoutError(f"{path}: dataset.json must hold a JSON object")
        return data

    def _task(self, folder: Path) -> str | None:
        """MSD data set name from the folder name (Task09_Spleen) or dataset.json's name."""

        try:
            name = str(self._read_json(folder).get("name", ""))
        except LayoutError:
            name = ""
        for candidate in (folder.name, f"msd_{name}", f"task_{name}", name):
            try:
                spec = get_dataset(candidate)
            except MedSegZooError:
                continue
            if spec.name in self.datasets:
                return spec.name
        return None

    def scan(self, root: Path) -> list[ScannedCase]:

        data = self._read_json(root)
        task = self._task(root)
        if task is None:
            raise LayoutError(
                f"{root / 'dataset.json'}: task name {data.get('name')!r} (folder {root.name!r}) is not an MSD task; "
                f"known: {', '.join(self.datasets)}"
            )
        spec = get_dataset(task)
        labels = {k: v for k, v in (data.get("labels") or {}).items() if str(k) != "0"}
        if labels and len(labels) != len(spec.labels):
            raise LayoutError(
                f"{root / 'dataset.json'}: lists {len(labels)} foreground labels {labels} but {task} has "
                f"{len(spec.labels)} ({', '.join(spec.classes)}); is this the right task?"
            )
        training = data.get("training")
        if not isinstance(training, list):
            # nnU-Net v2 style dataset.json without a file list: pair the folders instead
            return paired_folder_cases(
                root / "imagesTr", root / "labelsTr", dataset=task, split="training", labels_required=True
            ) + paired_folder_cases(root / "imagesTs", None, dataset=task, split=None)
        cases = []
        for i, item in enumerate(training):
            if not isinstance(item, dict) or not isinstance(item.get("image"), str):
                raise LayoutError(
                    f"{root / 'dataset.json'}: training[{i}] is not an image/label pair: {item!r}"
                )
            image = Path(os.path.normpath(root / item["image"]))
            label = (
                Path(os.path.normpath(root / item["label"]))
                if isinstance(item.get("label"), str)
                else None
            )
            cases.append(
                ScannedCase(
                    strip_nifti(image.name),
                    image,
                    task,
                    label=label,
                    split="training" if label else "unlabeled",
                )
            )
        for item in data.get("test") or []:
            path = item.get("image") if isinstance(item, dict) else item
            if isinstance(path, str):
                image = Path(os.path.normpath(root / path))
                cases.append(
                    ScannedCase(strip_nifti(image.name), image, task, split="unlabeled_test")
                )
        return cases
