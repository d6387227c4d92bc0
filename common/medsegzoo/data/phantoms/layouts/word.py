"""WORD layout (``word``): ``WORD-V0.1.0/imagesTr|labelsTr|imagesVal|labelsVal|imagesTs|labelsTs``
(about 70 / 15 / 15 % of the labeled cases), unlabeled cases in ``imagesTs/``.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.phantoms.layouts._writing import paired_folders
from medsegzoo.data.phantoms.layouts.base import LayoutContext


def write_word(ctx: LayoutContext) -> Path:
    """Write the WORD folders; return ``WORD-V0.1.0/``."""
    root = ctx.out / "WORD-V0.1.0"
    paired_folders(
        ctx,
        root,
        [("Tr", "training", True), ("Val", "validation", True), ("Ts", "test", True)],
        lambda index, labeled: f"word_{index + 1:04d}",
        [0.7, 0.15, 0.15],
    )
    return root
