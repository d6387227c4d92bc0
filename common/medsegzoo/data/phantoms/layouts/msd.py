"""Medical Segmentation Decathlon layouts (``msd``, ``msd_<task>``): ``TaskNN_Name/dataset.json``
with ``imagesTr/`` + ``labelsTr/`` for the labeled cases and ``imagesTs/`` for the unlabeled
ones, for the tasks spleen (the default), liver, pancreas, lung, hepatic_vessel and colon; the
task folder, ``dataset.json`` name, file prefix, zero padding and first number come from the
layout's ``task`` option.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.phantoms.layouts._writing import labels_json, write_cases
from medsegzoo.data.phantoms.layouts.base import LayoutContext
from medsegzoo.utils.atomic import atomic_write_json


def write_msd(ctx: LayoutContext) -> Path:
    """Write the task folder with its ``dataset.json``; return the task folder."""
    folder, json_name, prefix, padded, first = ctx.spec.options["task"]
    root = ctx.out / folder

    def place(index: int, labeled: bool) -> tuple[str, Path, Path | None, str]:
        number = index + first
        stem = f"{prefix}_{number:03d}" if padded else f"{prefix}_{number}"
        image = root / ("imagesTr" if labeled else "imagesTs") / f"{stem}.nii.gz"
        label = root / "labelsTr" / f"{stem}.nii.gz" if labeled else None
        return stem, image, label, "training" if labeled else "unlabeled_test"

    write_cases(ctx, place)
    training = [
        {
            "image": f"./{r['image'][len(folder) + 1 :]}",
            "label": f"./{r['label'][len(folder) + 1 :]}",
        }
        for r in ctx.records
        if r["labeled"]
    ]
    test = [f"./{r['image'][len(folder) + 1 :]}" for r in ctx.records if not r["labeled"]]
    atomic_write_json(
        root / "dataset.json",
        {
            "name": json_name,
            "description": f"synthetic phantoms in the layout of MSD {folder}",
            "reference": "medsegzoo synthetic phantoms",
            "licence": "CC-BY-SA 4.0",
            "release": "1.0",
            "tensorImageSize": "3D",
            "modality": {"0": ctx.records[0]["modality"]},
            "labels": labels_json(ctx.spec.dataset),
            "numTraining": len(training),
            "numTest": len(test),
            "training": training,
            "test": test,
        },
    )
    return root
