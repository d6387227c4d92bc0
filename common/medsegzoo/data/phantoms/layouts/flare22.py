"""FLARE22 layout (``flare22``):
``Training/FLARE22_LabeledCase50/images/FLARE22_Tr_0001_0000.nii.gz`` +
``Training/FLARE22_LabeledCase50/labels/FLARE22_Tr_0001.nii.gz``; unlabeled cases as
``Training/FLARE22_UnlabeledCase1-1000/Case_00001_0000.nii.gz``.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.phantoms.layouts._writing import write_cases
from medsegzoo.data.phantoms.layouts.base import LayoutContext


def write_flare22(ctx: LayoutContext) -> Path:
    """Write the labeled and unlabeled FLARE22 folders; return OUT."""
    def place(index: int, labeled: bool) -> tuple[str, Path, Path | None, str]:
        if labeled:
            stem = f"FLARE22_Tr_{index + 1:04d}"
            base = ctx.out / "Training" / "FLARE22_LabeledCase50"
            return (
                stem,
                base / "images" / f"{stem}_0000.nii.gz",
                base / "labels" / f"{stem}.nii.gz",
                "training",
            )
        stem = f"Case_{index - ctx.labeled + 1:05d}"
        return (
            stem,
            ctx.out / "Training" / "FLARE22_UnlabeledCase1-1000" / f"{stem}_0000.nii.gz",
            None,
            "unlabeled",
        )

    write_cases(ctx, place)
    return ctx.out
