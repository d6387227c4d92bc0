"""KiTS19 layout (``kits19``): ``data/case_00000/imaging.nii.gz`` + ``segmentation.nii.gz``
stored as the release does (axes slices, rows, columns with axis codes I, P, L and a zero
origin), ``data/kits.json`` with the labeled cases' clinical data, and imaging-only
(unlabeled) cases from ``case_00210`` on.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.phantoms.layouts._writing import write_cases
from medsegzoo.data.phantoms.layouts.base import LayoutContext
from medsegzoo.utils.atomic import atomic_write_json


def write_kits19(ctx: LayoutContext) -> Path:
    """Write the cases and ``kits.json``; return ``data/``."""
    root = ctx.out / "data"

    def place(index: int, labeled: bool) -> tuple[str, Path, Path | None, str]:
        case_id = f"case_{index if labeled else 210 + index - ctx.labeled:05d}"
        label = root / case_id / "segmentation.nii.gz" if labeled else None
        return (
            case_id,
            root / case_id / "imaging.nii.gz",
            label,
            "training" if labeled else "unlabeled_test",
        )

    # the release stores (slices, rows, columns) with axis codes I, P, L and a zero origin
    written = write_cases(ctx, place, codes="IPL", zero_origin=True)
    clinical = [
        {
            "case_id": case_id,
            "age_at_nephrectomy": phantom.metadata["age"],
            "gender": "male" if phantom.metadata["sex"] == "M" else "female",
        }
        for case_id, phantom in written
    ]
    atomic_write_json(root / "kits.json", clinical)
    return root
