"""LiTS layout (``lits``): ``Training Batch 1/volume-N.nii`` + ``segmentation-N.nii``
(uncompressed NIfTI), unlabeled cases as ``LITS-Challenge-Test-Data/test-volume-N.nii``.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.phantoms.layouts._writing import write_cases
from medsegzoo.data.phantoms.layouts.base import LayoutContext


def write_lits(ctx: LayoutContext) -> Path:
    """Write the training batch and the test volumes; return OUT."""
    def place(index: int, labeled: bool) -> tuple[str, Path, Path | None, str]:
        if labeled:
            batch = ctx.out / "Training Batch 1"
            return (
                f"lits_{index}",
                batch / f"volume-{index}.nii",
                batch / f"segmentation-{index}.nii",
                "training",
            )
        number = index - ctx.labeled
        return (
            f"lits_test_{number}",
            ctx.out / "LITS-Challenge-Test-Data" / f"test-volume-{number}.nii",
            None,
            "unlabeled_test",
        )

    write_cases(ctx, place)
    return ctx.out
