"""BTCV layout (``btcv``): ``RawData/Training/img/img0001.nii.gz`` +
``RawData/Training/label/label0001.nii.gz`` with the Synapse training ids (1-10, 21-40, then
on from 81), unlabeled cases in ``RawData/Testing/img/`` from id 61 on.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.phantoms.layouts._writing import write_cases
from medsegzoo.data.phantoms.layouts.base import LayoutContext


def _btcv_ids(n: int) -> list[int]:
    """Synapse training ids: 1-10, 21-40, then on from 81 (61-80 are the test ids)."""
    ids = [*range(1, 11), *range(21, 41)]
    return (ids + list(range(81, 81 + max(0, n - len(ids)))))[:n]


def write_btcv(ctx: LayoutContext) -> Path:
    """Write ``RawData/Training`` and ``RawData/Testing``; return OUT."""
    ids = _btcv_ids(ctx.labeled)

    def place(index: int, labeled: bool) -> tuple[str, Path, Path | None, str]:
        number = ids[index] if labeled else 61 + index - ctx.labeled
        part = ctx.out / "RawData" / ("Training" if labeled else "Testing")
        label = part / "label" / f"label{number:04d}.nii.gz" if labeled else None
        return (
            f"btcv_{number:04d}",
            part / "img" / f"img{number:04d}.nii.gz",
            label,
            "training" if labeled else "unlabeled_test",
        )

    write_cases(ctx, place)
    return ctx.out
