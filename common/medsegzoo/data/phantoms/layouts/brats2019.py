"""BraTS 2019 layout (``brats2019``):
``MICCAI_BraTS_2019_Data_Training/{HGG,LGG}/<id>/<id>_{flair,t1,t1ce,t2,seg}.nii.gz``
(labels 1, 2, 4; the case id carries one institution per site); unlabeled cases in
``MICCAI_BraTS_2019_Data_Validation/<id>/`` without ``_seg``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsegzoo.data.io import save_volume
from medsegzoo.data.phantoms.layouts._writing import oriented
from medsegzoo.data.phantoms.layouts.base import LayoutContext


# BraTS 2019 case ids carry the contributing institution: one per site
_BRATS_INSTITUTES = ("2013", "CBICA", "TCIA01", "TCIA02", "TMC")


def write_brats2019(ctx: LayoutContext) -> Path:
    """Write the four sequences (and segmentation) of every case; return OUT."""
    institute = _BRATS_INSTITUTES[ctx.site.index % len(_BRATS_INSTITUTES)]
    for index, labeled in ctx.cases():
        phantom = ctx.make(index)
        case_id = f"BraTS19_{institute}_{100 + index}_1"
        if labeled:
            case_dir = (
                ctx.out / "MICCAI_BraTS_2019_Data_Training" / phantom.metadata["grade"] / case_id
            )
        else:
            case_dir = ctx.out / "MICCAI_BraTS_2019_Data_Validation" / case_id
        images = {"flair": phantom.image, **phantom.extra_images}
        affine = None
        for sequence in ("flair", "t1", "t1ce", "t2"):
            array, affine = oriented(
                images[sequence].astype(np.float32), phantom, ctx.site.orientation
            )
            save_volume(case_dir / f"{case_id}_{sequence}.nii.gz", array, affine)
        label = None
        if labeled:
            label = case_dir / f"{case_id}_seg.nii.gz"
            native, _ = oriented(
                phantom.label_map(ctx.spec.dataset), phantom, ctx.site.orientation
            )
            save_volume(label, native, affine)
        ctx.record(
            case_id,
            phantom,
            labeled,
            "training" if labeled else "unlabeled_test",
            image=case_dir / f"{case_id}_flair.nii.gz",
            label=label,
        )
    return ctx.out
