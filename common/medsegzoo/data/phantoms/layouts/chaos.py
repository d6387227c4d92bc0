"""CHAOS layouts (``chaos``, ``chaos_mr``, ``chaos_ct``): DICOM series + PNG ground truth. MR
(the default): ``CHAOS_Train_Sets/Train_Sets/MR/<id>/T2SPIR/DICOM_anon/*.dcm`` +
``T2SPIR/Ground/*.png`` (grey values 63/126/189/252; only T2-SPIR, no T1-DUAL); CT:
``CHAOS_Train_Sets/Train_Sets/CT/<id>/DICOM_anon/`` + ``Ground/`` (liver 255, files numbered
from the head down). Patient folders use the released train-set numbers; unlabeled cases go
to ``CHAOS_Test_Sets/Test_Sets/`` without ``Ground``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsegzoo.data.io import save_dicom_series
from medsegzoo.data.phantoms.layouts._writing import dicom_inplane_codes, dicom_meta, oriented
from medsegzoo.data.phantoms.layouts.base import LayoutContext
from medsegzoo.taxonomy import get_dataset
from medsegzoo.utils.atomic import atomic_path


# CHAOS patient folder numbers as released (train sets); further phantoms continue after them
_CHAOS_IDS = {
    "MR": (1, 2, 3, 5, 8, 10, 13, 15, 19, 20, 21, 22, 31, 32, 33, 34, 36, 37, 38, 39),
    "CT": (1, 2, 5, 6, 8, 10, 14, 16, 18, 19, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30),
}


def write_chaos(ctx: LayoutContext) -> Path:
    """Write the MR or CT (by the layout's data set) train and test sets; return OUT."""
    from PIL import Image

    spec = get_dataset(ctx.spec.dataset)
    modality = "MR" if spec.modality == "MR" else "CT"
    raw_value = {native: raw for raw, native in spec.value_aliases.items()}  # CT liver: 1 -> 255
    known = _CHAOS_IDS[modality]
    for index, labeled in ctx.cases():
        number = known[index] if index < len(known) else known[-1] + 1 + index - len(known)
        phantom = ctx.make(index)
        top = ctx.out / ("CHAOS_Train_Sets/Train_Sets" if labeled else "CHAOS_Test_Sets/Test_Sets")
        base = top / modality / str(number) / ("T2SPIR" if modality == "MR" else "")
        image, affine = oriented(phantom.image, phantom, dicom_inplane_codes(ctx.site))
        if modality == "MR":
            dicom_name, png_name = (
                (lambda k: f"IMG-0002-{k + 1:05d}.dcm"),
                (lambda k: f"IMG-0002-{k + 1:05d}.png"),
            )
        else:
            dicom_name, png_name = (
                (lambda k: f"i{k:04d},0000b.dcm"),
                (lambda k: f"liver_GT_{k:03d}.png"),
            )
        reverse = modality == "CT"  # CT files are numbered from the head down
        save_dicom_series(
            base / "DICOM_anon",
            image,
            affine,
            modality=modality,
            uid_seed=f"chaos-{modality}-{number}-{phantom.metadata['seed']}",
            metadata=dicom_meta(phantom, f"CHAOS_{modality}_{number}"),
            file_name=dicom_name,
            reverse_names=reverse,
        )
        ground = None
        if labeled:
            ground = base / "Ground"
            native, _ = oriented(
                phantom.label_map(spec.name), phantom, dicom_inplane_codes(ctx.site)
            )
            lut = np.zeros(int(native.max()) + 1, np.uint8)
            for value in range(1, lut.size):
                lut[value] = raw_value.get(value, value)
            native = np.take(lut, native)
            n = native.shape[2]
            for k in range(n):
                with atomic_path(ground / png_name(n - 1 - k if reverse else k)) as tmp:
                    Image.fromarray(np.ascontiguousarray(native[:, :, k].T)).save(tmp, format="PNG")
        ctx.record(
            f"chaos_{modality.lower()}_{number}",
            phantom,
            labeled,
            "training" if labeled else "unlabeled_test",
            image=base / "DICOM_anon",
            label=ground,
        )
    return ctx.out
