"""Per-class mask folder layouts (``totalsegmentator``, ``abdomenatlas``, ``abdomenatlas1_1``):
``<case>/ct.nii.gz`` + ``<case>/segmentations/<class>.nii.gz``, one binary mask per class of
the data set (empty when absent); TotalSegmentator cases are ``s0000``, ... with a
``meta.csv`` (``;``-separated, BOM, with a train/val/test ``split`` column), AbdomenAtlas cases
``BDMAP_00000001``, ... (9 classes in AbdomenAtlas, 25 in 1.1; every case labeled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsegzoo.data.io import save_volume
from medsegzoo.data.phantoms.layouts._writing import csv_text, image_array, oriented, split_counts
from medsegzoo.data.phantoms.layouts.base import LayoutContext
from medsegzoo.taxonomy import get_dataset
from medsegzoo.utils.atomic import atomic_write_text


def write_mask_folders(ctx: LayoutContext) -> Path:
    """Per-class masks (TotalSegmentator, AbdomenAtlas): one binary file per class of the set."""

    spec = get_dataset(ctx.spec.dataset)
    root = ctx.out
    style = ctx.spec.options["ids"]
    splits = split_counts(ctx.labeled, [0.8, 0.1, 0.1])
    split_names = [
        s for s, n in zip(("train", "val", "test"), splits, strict=True) for _ in range(n)
    ]
    meta_rows = []
    for index, labeled in ctx.cases():
        case_id = f"s{index:04d}" if style == "totalsegmentator" else f"BDMAP_{index + 1:08d}"
        phantom = ctx.make(index)
        case_dir = root / case_id
        image, affine = oriented(image_array(phantom), phantom, ctx.site.orientation)
        save_volume(case_dir / "ct.nii.gz", image, affine)
        if labeled:
            native, _ = oriented(phantom.label_map(spec.name), phantom, ctx.site.orientation)
            for value, cls in spec.labels.items():
                save_volume(
                    case_dir / "segmentations" / f"{spec.mask_files[cls]}.nii.gz",
                    (native == value).astype(np.uint8),
                    affine,
                )
        split = split_names[index] if labeled else "unlabeled"
        ctx.record(
            case_id,
            phantom,
            labeled,
            split,
            image=case_dir / "ct.nii.gz",
            masks=case_dir / "segmentations" if labeled else None,
        )
        meta_rows.append(
            {
                "image_id": case_id,
                "age": phantom.metadata["age"],
                "gender": phantom.metadata["sex"].lower(),
                "institute": phantom.metadata["site"],
                "study_type": "ct abdomen-pelvis",
                "split": split if labeled else "",
                "manufacturer": phantom.metadata["manufacturer"],
                "scanner_model": phantom.metadata["scanner"],
                "kvp": 120,
                "pathology": "tumor" if phantom.metadata["has_tumor"] else "no_pathology",
                "pathology_location": ",".join(
                    sorted({les["host"] for les in phantom.metadata["lesions"]})
                ),
            }
        )
    if style == "totalsegmentator":
        columns = [
            "image_id",
            "age",
            "gender",
            "institute",
            "study_type",
            "split",
            "manufacturer",
            "scanner_model",
            "kvp",
            "pathology",
            "pathology_location",
        ]
        atomic_write_text(
            root / "meta.csv",
            "\ufeff" + csv_text([r for r in meta_rows if r["split"]], columns, delimiter=";"),
        )
    return root
