"""Pancreas-CT (TCIA) layout (``pancreas_ct``): DICOM series as
``Pancreas-CT/PANCREAS_0001/<study>/<series>/1-001.dcm ...`` +
``TCIA_pancreas_labels-02-05-2017/label0001.nii.gz``, the label on the series' grid (the real
release's labels need a flip, these do not); unlabeled cases have no label file.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.io import save_dicom_series, save_volume
from medsegzoo.data.phantoms.layouts._writing import dicom_inplane_codes, dicom_meta, oriented
from medsegzoo.data.phantoms.layouts.base import LayoutContext


def write_pancreas_ct(ctx: LayoutContext) -> Path:
    """Write the DICOM series and the label files; return OUT."""
    root = ctx.out
    for index, labeled in ctx.cases():
        number = index + 1
        phantom = ctx.make(index)
        codes = dicom_inplane_codes(ctx.site)
        image, affine = oriented(phantom.image, phantom, codes)
        uid_number = 10000 + (number * 7919) % 90000
        series = (
            root
            / "Pancreas-CT"
            / f"PANCREAS_{number:04d}"
            / f"11-24-2015-PANCREAS{number:04d}-Pancreas-{uid_number}"
            / f"Pancreas-{(uid_number * 31) % 90000 + 10000}"
        )
        save_dicom_series(
            series,
            image,
            affine,
            modality="CT",
            uid_seed=f"pancreas-{number}-{phantom.metadata['seed']}",
            metadata=dicom_meta(phantom, f"PANCREAS_{number:04d}"),
            file_name=lambda k: f"1-{k + 1:03d}.dcm",
            reverse_names=True,
        )
        label = None
        if labeled:
            label = root / "TCIA_pancreas_labels-02-05-2017" / f"label{number:04d}.nii.gz"
            native, _ = oriented(phantom.label_map(ctx.spec.dataset), phantom, codes)
            save_volume(label, native, affine)
        ctx.record(
            f"PANCREAS_{number:04d}",
            phantom,
            labeled,
            "training" if labeled else "unlabeled",
            image=series,
            label=label,
        )
    return root
