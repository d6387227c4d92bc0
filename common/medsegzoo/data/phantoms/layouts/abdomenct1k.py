"""AbdomenCT-1K layout (``abdomenct1k``): ``AbdomenCT-1K-ImagePart1/Case_00001_0000.nii.gz`` +
``Mask/Case_00001.nii.gz``; unlabeled cases are images without a mask.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.phantoms.layouts._writing import write_cases
from medsegzoo.data.phantoms.layouts.base import LayoutContext


def write_abdomenct1k(ctx: LayoutContext) -> Path:
    """Write the image part and the masks; return OUT."""
    def place(index: int, labeled: bool) -> tuple[str, Path, Path | None, str]:
        stem = f"Case_{index + 1:05d}"
        label = ctx.out / "Mask" / f"{stem}.nii.gz" if labeled else None
        image = ctx.out / "AbdomenCT-1K-ImagePart1" / f"{stem}_0000.nii.gz"
        return f"abdomenct1k_{index + 1:05d}", image, label, "training" if labeled else "unlabeled"

    write_cases(ctx, place)
    return ctx.out
