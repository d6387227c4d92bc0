"""AMOS 2022 layouts (``amos``, ``amos_mr``):
``amos22/imagesTr|labelsTr|imagesVa|labelsVa|imagesTs`` (labeled cases about 75 / 25 % between
``Tr`` and ``Va``, unlabeled ones in ``imagesTs``) with ``amos22/dataset.json``, and
``labeled_data_meta_0000_0599.csv`` beside ``amos22/``; CT case ids start at 1, MR ids at 500.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.phantoms.layouts._writing import csv_text, labels_json, paired_folders
from medsegzoo.data.phantoms.layouts.base import LayoutContext
from medsegzoo.utils.atomic import atomic_write_json, atomic_write_text


def write_amos(ctx: LayoutContext) -> Path:
    """Write ``amos22/`` and the metadata CSV beside it; return ``amos22/``."""
    root = ctx.out / "amos22"
    first = 500 if ctx.spec.dataset == "amos_mr" else 1

    def name(index: int, labeled: bool) -> str:
        return f"amos_{first + index:04d}"

    entries = paired_folders(
        ctx,
        root,
        [("Tr", "training", True), ("Va", "validation", True), ("Ts", "test", False)],
        name,
        [0.75, 0.25],
    )
    modality = ctx.records[0]["modality"] if ctx.records else ctx.spec.modality
    atomic_write_json(
        root / "dataset.json",
        {
            "name": "AMOS",
            "description": "synthetic phantoms in the layout of AMOS 2022",
            "tensorImageSize": "3D",
            "modality": {"0": modality},
            "labels": labels_json(ctx.spec.dataset),
            "numTraining": sum(e["split"] == "training" for e in entries),
            "numValidation": sum(e["split"] == "validation" for e in entries),
            "numTest": sum(e["label"] is None for e in entries),
            "training": [
                {"image": f"./{e['image']}", "label": f"./{e['label']}"}
                for e in entries
                if e["split"] == "training" and e["label"]
            ],
            "validation": [
                {"image": f"./{e['image']}", "label": f"./{e['label']}"}
                for e in entries
                if e["split"] == "validation" and e["label"]
            ],
            "test": [{"image": f"./{e['image']}"} for e in entries if e["label"] is None],
        },
    )
    rows = [
        {
            "amos_id": int(r["case_id"].split("_")[1]),
            "Patient's Sex": r["sex"],
            "Patient's Age": f"{r['age']:03d}Y",
            "Manufacturer": r["manufacturer"],
            "Manufacturer's Model Name": r["scanner"],
            "Site": r["site"],
        }
        for r in ctx.records
    ]
    atomic_write_text(
        ctx.out / "labeled_data_meta_0000_0599.csv",
        csv_text(rows, list(rows[0]) if rows else ["amos_id"]),
    )
    return root
