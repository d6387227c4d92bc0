"""CT-ORG layout (``ct_org``): ``OrganSegmentations/volume-N.nii.gz`` + ``labels-N.nii.gz``;
unlabeled cases are volumes without a ``labels-N`` file.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.phantoms.layouts._writing import write_cases
from medsegzoo.data.phantoms.layouts.base import LayoutContext


def write_ct_org(ctx: LayoutContext) -> Path:
    """CT-ORG: ``OrganSegmentations/volume-N.nii.gz`` + ``labels-N.nii.gz``."""
    root = ctx.out / "OrganSegmentations"

    def place(index: int, labeled: bool) -> tuple[str, Path, Path | None, str]:
        label = root / f"labels-{index}.nii.gz" if labeled else None
        return (
            f"ct_org_{index}",
            root / f"volume-{index}.nii.gz",
            label,
            "training" if labeled else "unlabeled",
        )

    write_cases(ctx, place)
    return root
