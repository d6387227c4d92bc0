"""Helpers the phantom layout writers share: stored arrays and orientation, NIfTI image/label
pairs (:func:`write_cases`, :func:`paired_folders`), split counts, ``dataset.json`` labels,
CSV text and the DICOM in-plane orientation and patient metadata.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsegzoo.data.io import save_volume
from medsegzoo.data.phantoms.generator import Phantom
from medsegzoo.data.phantoms.layouts.base import LayoutContext
from medsegzoo.data.phantoms.sites import Site, to_orientation
from medsegzoo.taxonomy import get_dataset

# In-plane order of axial DICOM slices as scanners write them: rows run to the patient's left
# (LPS +x), columns to the posterior (LPS +y).
DICOM_INPLANE = "LP"


def oriented(array: np.ndarray, phantom: Phantom, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """``array`` (on the phantom's RAS grid) and its affine in the orientation ``codes``."""
    return to_orientation(array, phantom.affine, codes)


def image_array(phantom: Phantom, image: np.ndarray | None = None) -> np.ndarray:
    """Stored image: CT as int16 HU (as scanners export), MR as float32."""
    image = phantom.image if image is None else image
    if phantom.metadata["modality"] == "CT":
        return np.rint(image).astype(np.int16)
    return image.astype(np.float32)


def write_pair(
    ctx: LayoutContext,
    phantom: Phantom,
    image_path: Path,
    label_path: Path | None,
    *,
    codes: str | None = None,
    zero_origin: bool = False,
) -> None:
    """Write a case's image (and native label map) as NIfTI in the site's orientation."""
    codes = codes or ctx.site.orientation
    image, affine = oriented(image_array(phantom), phantom, codes)
    if zero_origin:
        affine = affine.copy()
        affine[:3, 3] = 0.0
    save_volume(image_path, image, affine)
    if label_path is not None:
        label, _ = oriented(phantom.label_map(ctx.spec.dataset), phantom, codes)
        save_volume(label_path, label, affine)


def paired_folders(
    ctx: LayoutContext,
    root: Path,
    splits: Sequence[tuple[str, str, bool]],
    case_name: Callable[[int, bool], str],
    shares: Sequence[float],
) -> list[dict[str, Any]]:
    """Write ``images<X>/`` + ``labels<X>/`` folders (AMOS, WORD).

    Args:
        ctx: the context.
        root: layout top folder.
        splits: ``(suffix, split name, has labels)`` per folder pair; the last entry takes
            the unlabeled cases.
        case_name: (case index, labeled) -> file stem.
        shares: fraction of the labeled cases per labeled split (in order).

    Returns:
        ``{"image", "label", "split"}`` entries (paths relative to ``root``) for dataset.json.
    """
    counts = split_counts(ctx.labeled, shares)
    assignment = [s for s, n in zip(splits, counts, strict=False) for _ in range(n)]
    entries = []
    for index, labeled in ctx.cases():
        suffix, split, has_labels = assignment[index] if labeled else splits[-1]
        phantom = ctx.make(index)
        stem = case_name(index, labeled)
        image = root / f"images{suffix}" / f"{stem}.nii.gz"
        label = root / f"labels{suffix}" / f"{stem}.nii.gz" if labeled and has_labels else None
        write_pair(ctx, phantom, image, label)
        ctx.record(
            stem,
            phantom,
            label is not None,
            split if label is not None else "unlabeled",
            image=image,
            label=label,
        )
        entries.append(
            {
                "image": image.relative_to(root).as_posix(),
                "label": None if label is None else label.relative_to(root).as_posix(),
                "split": split,
            }
        )
    return entries


def split_counts(n: int, shares: Sequence[float]) -> list[int]:
    """Cases per split: the later splits by their share (rounded down), the rest in the first
    one, which keeps at least one case."""
    counts = [int(np.floor(n * s)) for s in shares]
    counts[0] = n - sum(counts[1:])
    if counts[0] < 1 and n >= 1:
        for k in range(len(counts) - 1, 0, -1):
            while counts[k] > 0 and counts[0] < 1:
                counts[k] -= 1
                counts[0] += 1
    return counts


def labels_json(dataset: str) -> dict[str, str]:
    """``{"0": "background", "1": <class>, ...}`` from the taxonomy."""

    spec = get_dataset(dataset)
    return {"0": "background", **{str(v): spec.labels[v] for v in sorted(spec.labels)}}


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str], delimiter: str = ",") -> str:
    """CSV text with a header line; cells missing from a row are left empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), delimiter=delimiter, lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buffer.getvalue()


def dicom_inplane_codes(site: Site) -> str:
    """Axial DICOM: rows to the patient's left, columns posterior; slices as the site stores."""
    return DICOM_INPLANE + site.orientation[2]


def dicom_meta(phantom: Phantom, patient_id: str) -> dict[str, Any]:
    """Patient and scanner metadata of a case for its DICOM headers."""
    return {
        "patient_id": patient_id,
        **{k: phantom.metadata[k] for k in ("age", "sex", "manufacturer", "scanner", "site")},
    }


def write_cases(
    ctx: LayoutContext,
    place: Callable[[int, bool], tuple[str, Path, Path | None, str]],
    **pair_options: Any,
) -> list[tuple[str, Phantom]]:
    """Write every case as a NIfTI image/label pair at the paths ``place`` chooses.

    Args:
        ctx: the context.
        place: (case index, labeled) -> (case id, image path, label path or None, split).
        pair_options: passed to :func:`write_pair` (orientation codes, zero origin).

    Returns:
        ``(case id, phantom)`` of the labeled cases.
    """
    written = []
    for index, labeled in ctx.cases():
        case_id, image, label, split = place(index, labeled)
        phantom = ctx.make(index)
        write_pair(ctx, phantom, image, label, **pair_options)
        ctx.record(case_id, phantom, label is not None, split, image=image, label=label)
        if label is not None:
            written.append((case_id, phantom))
    return written
