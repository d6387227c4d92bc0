"""Write phantom data sets in the folder layouts the public data sets are distributed in.

Every writer produces the tree a user gets after downloading and unpacking the real data
set, with that data set's native label values (from :mod:`medsegzoo.taxonomy`, never a table
of its own) and only the classes that data set labels: an MSD-Spleen-like set holds
``{0, 1}``, a KiTS19-like set ``{0, 1, 2}`` with both kidneys in label 1. So the readers of
:mod:`medsegzoo.data.readers` run on phantoms exactly as on the real downloads.

Layouts (``--layout``; a data set name selects the variant):

==================  =========================================================================
layout              tree written under OUT
==================  =========================================================================
msd, msd_<task>     ``TaskNN_Name/dataset.json``, ``imagesTr/``, ``labelsTr/``, ``imagesTs/``
                    (tasks: spleen [default], liver, pancreas, lung, hepatic_vessel, colon)
btcv                ``RawData/Training/img/img0001.nii.gz`` + ``label/label0001.nii.gz``
                    (Synapse ids 1-10, 21-40, ...), ``RawData/Testing/img/`` for unlabeled
amos, amos_mr       ``amos22/imagesTr|labelsTr|imagesVa|labelsVa|imagesTs``, ``dataset.json``,
                    ``labeled_data_meta_0000_0599.csv`` beside ``amos22/``; MR ids >= 500
word                ``WORD-V0.1.0/imagesTr|labelsTr|imagesVal|labelsVal|imagesTs|labelsTs``
flare22             ``Training/FLARE22_LabeledCase50/images/FLARE22_Tr_0001_0000.nii.gz`` +
                    ``labels/FLARE22_Tr_0001.nii.gz``; unlabeled
                    ``Training/FLARE22_UnlabeledCase1-1000/Case_00001_0000.nii.gz``
totalsegmentator    ``s0000/ct.nii.gz`` + ``s0000/segmentations/<class>.nii.gz`` (all 117 v2
                    classes, empty when absent) + ``meta.csv`` (``;``-separated, BOM)
abdomenatlas(1_1)   ``BDMAP_00000001/ct.nii.gz`` + ``segmentations/<class>.nii.gz`` (9 / 25)
kits19              ``data/case_00000/imaging.nii.gz`` + ``segmentation.nii.gz`` stored as
                    the release does: axes (slices, rows, columns), axis codes I, P, L, zero
                    origin; ``data/kits.json``; imaging-only cases from ``case_00210``
lits                ``Training Batch 1/volume-N.nii`` + ``segmentation-N.nii`` (uncompressed),
                    ``LITS-Challenge-Test-Data/test-volume-N.nii`` for unlabeled
chaos, chaos_mr     MR (default): ``CHAOS_Train_Sets/Train_Sets/MR/<id>/T2SPIR/DICOM_anon/*.dcm``
chaos_ct            + ``T2SPIR/Ground/*.png`` (grey values 63/126/189/252); CT (``--modality
                    CT`` or ``chaos_ct``): ``.../CT/<id>/DICOM_anon/`` + ``Ground/`` (liver
                    255). Only T2-SPIR is written for MR (no T1-DUAL). Unlabeled cases go to
                    ``CHAOS_Test_Sets/Test_Sets/`` without ``Ground``.
ct_org              ``OrganSegmentations/volume-N.nii.gz`` + ``labels-N.nii.gz``
abdomenct1k         ``AbdomenCT-1K-ImagePart1/Case_00001_0000.nii.gz`` + ``Mask/Case_00001.nii.gz``
pancreas_ct         ``Pancreas-CT/PANCREAS_0001/<study>/<series>/1-001.dcm ...`` +
                    ``TCIA_pancreas_labels-02-05-2017/label0001.nii.gz`` (label on the series'
                    grid; the real release's labels need a flip, these do not)
la                  ``2018LA_Seg_Training Set/<id>/mri_norm2.h5`` (datasets ``image``,
                    ``label``) + ``train.list`` / ``test.list`` (80/20 of the labeled cases;
                    unlabeled cases are appended to ``train.list``, labels kept in the file as
                    in the release: semi-supervised methods take the first N as labeled)
brats2019           ``MICCAI_BraTS_2019_Data_Training/{HGG,LGG}/<id>/<id>_{flair,t1,t1ce,t2,
                    seg}.nii.gz`` (labels 1, 2, 4); unlabeled cases in
                    ``MICCAI_BraTS_2019_Data_Validation/`` without ``_seg``
==================  =========================================================================

Beside the layout, ``OUT/phantom_manifest.json`` records the generation arguments and every
case's metadata (site, modality, manufacturer, age, sex, has_tumor, lesions), which most
real layouts do not carry.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsegzoo.data.io import save_dicom_series, save_volume
from medsegzoo.data.phantoms.generator import DEFAULT_LESIONS, Phantom, make_phantom
from medsegzoo.data.phantoms.sites import Site, get_site, to_orientation
from medsegzoo.errors import MedSegZooError, UnknownNameError
from medsegzoo.taxonomy import get_dataset
from medsegzoo.utils.atomic import atomic_path, atomic_write_json, atomic_write_text

__all__ = ["LAYOUTS", "LayoutSpec", "list_phantom_layouts", "write_phantom_dataset"]

MANIFEST_NAME = "phantom_manifest.json"
DEFAULT_TUMOR_PROBABILITY = 0.7
# In-plane order of axial DICOM slices as scanners write them: rows run to the patient's left
# (LPS +x), columns to the posterior (LPS +y).
DICOM_INPLANE = "LP"


@dataclass
class LayoutContext:
    """What a layout writer needs: where to write and how to make each case.

    Attributes:
        out: folder to write into (a temporary folder renamed to OUT on success).
        spec: the layout.
        labeled: number of labeled cases.
        unlabeled: number of images without labels.
        make: case index -> phantom.
        site: the acquisition site.
        records: per-case manifest entries, filled by :meth:`record`.
    """

    out: Path
    spec: LayoutSpec
    labeled: int
    unlabeled: int
    make: Callable[[int], Phantom]
    site: Site
    records: list[dict[str, Any]] = field(default_factory=list)

    def cases(self) -> list[tuple[int, bool]]:
        """``(index, labeled)`` of every case to write, labeled ones first."""
        return [(i, True) for i in range(self.labeled)] + [
            (self.labeled + j, False) for j in range(self.unlabeled)
        ]

    def record(
        self, case_id: str, phantom: Phantom, labeled: bool, split: str, **paths: Path | None
    ) -> None:
        """Add a case to the manifest (paths relative to OUT)."""
        entry: dict[str, Any] = {"case_id": case_id, "labeled": labeled, "split": split}
        for key, path in paths.items():
            entry[key] = None if path is None else path.relative_to(self.out).as_posix()
        entry.update(phantom.metadata)
        self.records.append(entry)


@dataclass(frozen=True)
class LayoutSpec:
    """One phantom layout.

    Attributes:
        name: layout name on the command line.
        dataset: native data set (taxonomy key) of the labels written.
        writer: function writing the tree; returns the layout's top folder.
        anatomy: phantom anatomy ("abdomen", "left_atrium", "brain").
        modality: default modality.
        lesions: lesion kinds drawn (None: the generator's default set).
        tumor_probability: probability of a tumour case (None: the caller's value).
        options: writer-specific settings.
        holds_unlabeled: whether the layout has a place for images without labels.
    """

    name: str
    dataset: str
    writer: Callable[[LayoutContext], Path]
    anatomy: str = "abdomen"
    modality: str = "CT"
    lesions: tuple[str, ...] | None = None
    tumor_probability: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    holds_unlabeled: bool = True


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def _oriented(array: np.ndarray, phantom: Phantom, codes: str) -> tuple[np.ndarray, np.ndarray]:
    return to_orientation(array, phantom.affine, codes)


def _image_array(phantom: Phantom, image: np.ndarray | None = None) -> np.ndarray:
    """Stored image: CT as int16 HU (as scanners export), MR as float32."""
    image = phantom.image if image is None else image
    if phantom.metadata["modality"] == "CT":
        return np.rint(image).astype(np.int16)
    return image.astype(np.float32)


def _write_pair(
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
    image, affine = _oriented(_image_array(phantom), phantom, codes)
    if zero_origin:
        affine = affine.copy()
        affine[:3, 3] = 0.0
    save_volume(image_path, image, affine)
    if label_path is not None:
        label, _ = _oriented(phantom.label_map(ctx.spec.dataset), phantom, codes)
        save_volume(label_path, label, affine)


def _paired_folders(
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
    counts = _split_counts(ctx.labeled, shares)
    assignment = [s for s, n in zip(splits, counts, strict=False) for _ in range(n)]
    entries = []
    for index, labeled in ctx.cases():
        suffix, split, has_labels = assignment[index] if labeled else splits[-1]
        phantom = ctx.make(index)
        stem = case_name(index, labeled)
        image = root / f"images{suffix}" / f"{stem}.nii.gz"
        label = root / f"labels{suffix}" / f"{stem}.nii.gz" if labeled and has_labels else None
        _write_pair(ctx, phantom, image, label)
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


def _split_counts(n: int, shares: Sequence[float]) -> list[int]:
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


def _labels_json(dataset: str) -> dict[str, str]:
    """``{"0": "background", "1": <class>, ...}`` from the taxonomy."""

    spec = get_dataset(dataset)
    return {"0": "background", **{str(v): spec.labels[v] for v in sorted(spec.labels)}}


def _csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), delimiter=delimiter, lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buffer.getvalue()


def _dicom_inplane_codes(site: Site) -> str:
    """Axial DICOM: rows to the patient's left, columns posterior; slices as the site stores."""
    return DICOM_INPLANE + site.orientation[2]


def _dicom_meta(phantom: Phantom, patient_id: str) -> dict[str, Any]:
    return {
        "patient_id": patient_id,
        **{k: phantom.metadata[k] for k in ("age", "sex", "manufacturer", "scanner", "site")},
    }


# ---------------------------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------------------------


def _write_cases(
    ctx: LayoutContext,
    place: Callable[[int, bool], tuple[str, Path, Path | None, str]],
    **pair_options: Any,
) -> list[tuple[str, Phantom]]:
    """Write every case as a NIfTI image/label pair at the paths ``place`` chooses.

    Args:
        ctx: the context.
        place: (case index, labeled) -> (case id, image path, label path or None, split).
        pair_options: passed to :func:`_write_pair` (orientation codes, zero origin).

    Returns:
        ``(case id, phantom)`` of the labeled cases.
    """
    written = []
    for index, labeled in ctx.cases():
        case_id, image, label, split = place(index, labeled)
        phantom = ctx.make(index)
        _write_pair(ctx, phantom, image, label, **pair_options)
        ctx.record(case_id, phantom, label is not None, split, image=image, label=label)
        if label is not None:
            written.append((case_id, phantom))
    return written


def _write_msd(ctx: LayoutContext) -> Path:
    folder, json_name, prefix, padded, first = ctx.spec.options["task"]
    root = ctx.out / folder

    def place(index: int, labeled: bool) -> tuple[str, Path, Path | None, str]:
        number = index + first
        stem = f"{prefix}_{number:03d}" if padded else f"{prefix}_{number}"
        image = root / ("imagesTr" if labeled else "imagesTs") / f"{stem}.nii.gz"
        label = root / "labelsTr" / f"{stem}.nii.gz" if labeled else None
        return stem, image, label, "training" if labeled else "unlabeled_test"

    _write_cases(ctx, place)
    training = [
        {
            "image": f"./{r['image'][len(folder) + 1 :]}",
            "label": f"./{r['label'][len(folder) + 1 :]}",
        }
        for r in ctx.records
        if r["labeled"]
    ]
    test = [f"./{r['image'][len(folder) + 1 :]}" for r in ctx.records if not r["labeled"]]
    atomic_write_json(
        root / "dataset.json",
        {
            "name": json_name,
            "description": f"synthetic phantoms in the layout of MSD {folder}",
            "reference": "medsegzoo synthetic phantoms",
            "licence": "CC-BY-SA 4.0",
            "release": "1.0",
            "tensorImageSize": "3D",
            "modality": {"0": ctx.records[0]["modality"]},
            "labels": _labels_json(ctx.spec.dataset),
            "numTraining": len(training),
            "numTest": len(test),
            "training": training,
            "test": test,
        },
    )
    return root


def _btcv_ids(n: int) -> list[int]:
    """Synapse training ids: 1-10, 21-40, then on from 81 (61-80 are the test ids)."""
    ids = [*range(1, 11), *range(21, 41)]
    return (ids + list(range(81, 81 + max(0, n - len(ids)))))[:n]


def _write_btcv(ctx: LayoutContext) -> Path:
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

    _write_cases(ctx, place)
    return ctx.out


def _write_amos(ctx: LayoutContext) -> Path:
    root = ctx.out / "amos22"
    first = 500 if ctx.spec.dataset == "amos_mr" else 1

    def name(index: int, labeled: bool) -> str:
        return f"amos_{first + index:04d}"

    entries = _paired_folders(
        ctx,
        root,
        [("Tr", "training", True), ("Va", "validation", True), ("Ts", "test", False)],
        name,
        [0.75, 0.25],
    )
    modality = ctx.records[0]["modality"] if ctx.records else ctx.spec.modality
    atomic_write_json(
        root / "dataset.json",
        {
            "name": "AMOS",
            "description": "synthetic phantoms in the layout of AMOS 2022",
            "tensorImageSize": "3D",
            "modality": {"0": modality},
            "labels": _labels_json(ctx.spec.dataset),
            "numTraining": sum(e["split"] == "training" for e in entries),
            "numValidation": sum(e["split"] == "validation" for e in entries),
            "numTest": sum(e["label"] is None for e in entries),
            "training": [
                {"image": f"./{e['image']}", "label": f"./{e['label']}"}
                for e in entries
                if e["split"] == "training" and e["label"]
            ],
            "validation": [
                {"image": f"./{e['image']}", "label": f"./{e['label']}"}
                for e in entries
                if e["split"] == "validation" and e["label"]
            ],
            "test": [{"image": f"./{e['image']}"} for e in entries if e["label"] is None],
        },
    )
    rows = [
        {
            "amos_id": int(r["case_id"].split("_")[1]),
            "Patient's Sex": r["sex"],
            "Patient's Age": f"{r['age']:03d}Y",
            "Manufacturer": r["manufacturer"],
            "Manufacturer's Model Name": r["scanner"],
            "Site": r["site"],
        }
        for r in ctx.records
    ]
    atomic_write_text(
        ctx.out / "labeled_data_meta_0000_0599.csv",
        _csv_text(rows, list(rows[0]) if rows else ["amos_id"]),
    )
    return root


def _write_word(ctx: LayoutContext) -> Path:
    root = ctx.out / "WORD-V0.1.0"
    _paired_folders(
        ctx,
        root,
        [("Tr", "training", True), ("Val", "validation", True), ("Ts", "test", True)],
        lambda index, labeled: f"word_{index + 1:04d}",
        [0.7, 0.15, 0.15],
    )
    return root


def _write_flare22(ctx: LayoutContext) -> Path:
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

    _write_cases(ctx, place)
    return ctx.out


def _write_mask_folders(ctx: LayoutContext) -> Path:
    """Per-class masks (TotalSegmentator, AbdomenAtlas): one binary file per class of the set."""

    spec = get_dataset(ctx.spec.dataset)
    root = ctx.out
    style = ctx.spec.options["ids"]
    splits = _split_counts(ctx.labeled, [0.8, 0.1, 0.1])
    split_names = [
        s for s, n in zip(("train", "val", "test"), splits, strict=True) for _ in range(n)
    ]
    meta_rows = []
    for index, labeled in ctx.cases():
        case_id = f"s{index:04d}" if style == "totalsegmentator" else f"BDMAP_{index + 1:08d}"
        phantom = ctx.make(index)
        case_dir = root / case_id
        image, affine = _oriented(_image_array(phantom), phantom, ctx.site.orientation)
        save_volume(case_dir / "ct.nii.gz", image, affine)
        if labeled:
            native, _ = _oriented(phantom.label_map(spec.name), phantom, ctx.site.orientation)
            for value, cls in spec.labels.items():
                save_volume(
                    case_dir / "segmentations" / f"{spec.mask_files[cls]}.nii.gz",
                    (native == value).astype(np.uint8),
                    affine,
                )
        split = split_names[index] if labeled else "unlabeled"
        ctx.record(
            case_id,
            phantom,
            labeled,
            split,
            image=case_dir / "ct.nii.gz",
            masks=case_dir / "segmentations" if labeled else None,
        )
        meta_rows.append(
            {
                "image_id": case_id,
                "age": phantom.metadata["age"],
                "gender": phantom.metadata["sex"].lower(),
                "institute": phantom.metadata["site"],
                "study_type": "ct abdomen-pelvis",
                "split": split if labeled else "",
                "manufacturer": phantom.metadata["manufacturer"],
                "scanner_model": phantom.metadata["scanner"],
                "kvp": 120,
                "pathology": "tumor" if phantom.metadata["has_tumor"] else "no_pathology",
                "pathology_location": ",".join(
                    sorted({les["host"] for les in phantom.metadata["lesions"]})
                ),
            }
        )
    if style == "totalsegmentator":
        columns = [
            "image_id",
            "age",
            "gender",
            "institute",
            "study_type",
            "split",
            "manufacturer",
            "scanner_model",
            "kvp",
            "pathology",
            "pathology_location",
        ]
        atomic_write_text(
            root / "meta.csv",
            "\ufeff" + _csv_text([r for r in meta_rows if r["split"]], columns, delimiter=";"),
        )
    return root


def _write_kits19(ctx: LayoutContext) -> Path:
    root = ctx.out / "data"

    def place(index: int, labeled: bool) -> tuple[str, Path, Path | None, str]:
        case_id = f"case_{index if labeled else 210 + index - ctx.labeled:05d}"
        label = root / case_id / "segmentation.nii.gz" if labeled else None
        return (
            case_id,
            root / case_id / "imaging.nii.gz",
            label,
            "training" if labeled else "unlabeled_test",
        )

    # the release stores (slices, rows, columns) with axis codes I, P, L and a zero origin
    written = _write_cases(ctx, place, codes="IPL", zero_origin=True)
    clinical = [
        {
            "case_id": case_id,
            "age_at_nephrectomy": phantom.metadata["age"],
            "gender": "male" if phantom.metadata["sex"] == "M" else "female",
        }
        for case_id, phantom in written
    ]
    atomic_write_json(root / "kits.json", clinical)
    return root


def _write_lits(ctx: LayoutContext) -> Path:
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

    _write_cases(ctx, place)
    return ctx.out


# CHAOS patient folder numbers as released (train sets); further phantoms continue after them
_CHAOS_IDS = {
    "MR": (1, 2, 3, 5, 8, 10, 13, 15, 19, 20, 21, 22, 31, 32, 33, 34, 36, 37, 38, 39),
    "CT": (1, 2, 5, 6, 8, 10, 14, 16, 18, 19, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30),
}


def _write_chaos(ctx: LayoutContext) -> Path:
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
        image, affine = _oriented(phantom.image, phantom, _dicom_inplane_codes(ctx.site))
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
            metadata=_dicom_meta(phantom, f"CHAOS_{modality}_{number}"),
            file_name=dicom_name,
            reverse_names=reverse,
        )
        ground = None
        if labeled:
            ground = base / "Ground"
            native, _ = _oriented(
                phantom.label_map(spec.name), phantom, _dicom_inplane_codes(ctx.site)
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


def _write_numbered(ctx: LayoutContext) -> Path:
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

    _write_cases(ctx, place)
    return root


def _write_abdomenct1k(ctx: LayoutContext) -> Path:
    def place(index: int, labeled: bool) -> tuple[str, Path, Path | None, str]:
        stem = f"Case_{index + 1:05d}"
        label = ctx.out / "Mask" / f"{stem}.nii.gz" if labeled else None
        image = ctx.out / "AbdomenCT-1K-ImagePart1" / f"{stem}_0000.nii.gz"
        return f"abdomenct1k_{index + 1:05d}", image, label, "training" if labeled else "unlabeled"

    _write_cases(ctx, place)
    return ctx.out


def _write_pancreas_ct(ctx: LayoutContext) -> Path:
    root = ctx.out
    for index, labeled in ctx.cases():
        number = index + 1
        phantom = ctx.make(index)
        codes = _dicom_inplane_codes(ctx.site)
        image, affine = _oriented(phantom.image, phantom, codes)
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
            metadata=_dicom_meta(phantom, f"PANCREAS_{number:04d}"),
            file_name=lambda k: f"1-{k + 1:03d}.dcm",
            reverse_names=True,
        )
        label = None
        if labeled:
            label = root / "TCIA_pancreas_labels-02-05-2017" / f"label{number:04d}.nii.gz"
            native, _ = _oriented(phantom.label_map(ctx.spec.dataset), phantom, codes)
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


def _la_case_id(rng: np.random.Generator) -> str:
    """A 20-character id like the LA release's folder names (upper-case letters and digits)."""
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    return "".join(rng.choice(alphabet, size=20))


def _write_la(ctx: LayoutContext) -> Path:
    import h5py

    root = ctx.out / "2018LA_Seg_Training Set"
    n_train = _split_counts(ctx.labeled, [0.8, 0.2])[0]
    train_list, test_list = [], []
    for index, labeled in ctx.cases():
        phantom = ctx.make(index)
        case_id = _la_case_id(np.random.default_rng([*phantom.metadata["seed"], 7]))
        image = phantom.image
        normalised = ((image - image.mean()) / (image.std() or 1.0)).astype(np.float32)
        path = root / case_id / "mri_norm2.h5"
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
            handle.create_dataset("image", data=normalised, compression="gzip")
            handle.create_dataset(
                "label", data=phantom.label_map(ctx.spec.dataset), compression="gzip"
            )
        in_train = not labeled or index < n_train
        (train_list if in_train else test_list).append((labeled, case_id))
        split = "training" if labeled and in_train else "test" if labeled else "unlabeled"
        ctx.record(case_id, phantom, labeled, split, image=path, label=path)
    train_list.sort(key=lambda item: not item[0])  # labeled cases first (the methods' first N)
    atomic_write_text(ctx.out / "train.list", "".join(f"{c}\n" for _, c in train_list))
    atomic_write_text(ctx.out / "test.list", "".join(f"{c}\n" for _, c in test_list))
    return ctx.out


# BraTS 2019 case ids carry the contributing institution: one per site
_BRATS_INSTITUTES = ("2013", "CBICA", "TCIA01", "TCIA02", "TMC")


def _write_brats2019(ctx: LayoutContext) -> Path:
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
            array, affine = _oriented(
                images[sequence].astype(np.float32), phantom, ctx.site.orientation
            )
            save_volume(case_dir / f"{case_id}_{sequence}.nii.gz", array, affine)
        label = None
        if labeled:
            label = case_dir / f"{case_id}_seg.nii.gz"
            native, _ = _oriented(
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


# ---------------------------------------------------------------------------------------------
# registry and entry point
# ---------------------------------------------------------------------------------------------


def _msd(
    name: str,
    task: tuple[str, str, str, bool, int],
    lesions: tuple[str, ...] | None,
    probability: float | None,
) -> LayoutSpec:
    return LayoutSpec(
        name,
        name,
        _write_msd,
        lesions=lesions,
        tumor_probability=probability,
        options={"task": task},
    )


LAYOUTS: dict[str, LayoutSpec] = {
    spec.name: spec
    for spec in (
        # (folder, dataset.json name, file prefix, zero-padded numbers, first number)
        _msd("msd_spleen", ("Task09_Spleen", "Spleen", "spleen", False, 1), None, None),
        _msd("msd_liver", ("Task03_Liver", "Liver", "liver", False, 0), ("liver_tumor",), 0.9),
        _msd(
            "msd_pancreas",
            ("Task07_Pancreas", "Pancreas", "pancreas", True, 1),
            ("pancreas_tumor",),
            1.0,
        ),
        _msd("msd_lung", ("Task06_Lung", "Lung", "lung", True, 1), ("lung_tumor",), 1.0),
        _msd(
            "msd_hepatic_vessel",
            ("Task08_HepaticVessel", "HepaticVessel", "hepaticvessel", True, 1),
            ("hepatic_vessel_tumor",),
            1.0,
        ),
        _msd("msd_colon", ("Task10_Colon", "Colon", "colon", True, 1), ("colon_tumor",), 1.0),
        LayoutSpec("btcv", "btcv", _write_btcv),
        LayoutSpec("amos", "amos", _write_amos),
        LayoutSpec("amos_mr", "amos_mr", _write_amos, modality="MR"),
        LayoutSpec("word", "word", _write_word),
        LayoutSpec("flare22", "flare22", _write_flare22),
        LayoutSpec(
            "totalsegmentator",
            "totalsegmentator",
            _write_mask_folders,
            options={"ids": "totalsegmentator"},
        ),
        LayoutSpec(
            "abdomenatlas",
            "abdomenatlas",
            _write_mask_folders,
            options={"ids": "abdomenatlas"},
            holds_unlabeled=False,
        ),
        LayoutSpec(
            "abdomenatlas1_1",
            "abdomenatlas1_1",
            _write_mask_folders,
            options={"ids": "abdomenatlas"},
            holds_unlabeled=False,
        ),
        LayoutSpec(
            "kits19",
            "kits19",
            _write_kits19,
            lesions=("kidney_tumor", "kidney_cyst"),
            tumor_probability=1.0,
        ),
        LayoutSpec("lits", "lits", _write_lits, lesions=("liver_tumor",), tumor_probability=0.85),
        LayoutSpec("chaos_mr", "chaos_mr", _write_chaos, modality="MR", lesions=()),
        LayoutSpec("chaos_ct", "chaos_ct", _write_chaos, lesions=()),
        LayoutSpec("ct_org", "ct_org", _write_numbered),
        LayoutSpec("abdomenct1k", "abdomenct1k", _write_abdomenct1k),
        LayoutSpec("pancreas_ct", "pancreas_ct", _write_pancreas_ct, lesions=()),
        LayoutSpec("la", "la", _write_la, anatomy="left_atrium", modality="MR", lesions=()),
        LayoutSpec(
            "brats2019", "brats2019", _write_brats2019, anatomy="brain", modality="MR", lesions=()
        ),
    )
}
# layout names that pick a variant: (modality or None) -> layout
_ALIASES: dict[str, dict[str | None, str]] = {
    "msd": {None: "msd_spleen"},
    "chaos": {None: "chaos_mr", "MR": "chaos_mr", "CT": "chaos_ct"},
    "amos": {None: "amos", "CT": "amos", "MR": "amos_mr"},
}


def list_phantom_layouts() -> tuple[str, ...]:
    """Every layout name :func:`write_phantom_dataset` accepts."""
    return tuple(sorted({*LAYOUTS, *_ALIASES}))


def resolve_layout(layout: str, modality: str | None = None) -> LayoutSpec:
    """The layout spec for a name (and modality, for layouts with CT and MR variants).

    Raises:
        UnknownNameError: unknown layout; the message lists the known ones.
    """
    key = str(layout).strip().lower().replace("-", "_")
    key = {
        "task09_spleen": "msd_spleen",
        "task03_liver": "msd_liver",
        "task07_pancreas": "msd_pancreas",
        "task06_lung": "msd_lung",
        "task08_hepaticvessel": "msd_hepatic_vessel",
        "task10_colon": "msd_colon",
    }.get(key, key)
    if key in _ALIASES:
        variants = _ALIASES[key]
        key = variants.get(modality, variants[None]) if modality else variants[None]
    if key not in LAYOUTS:
        raise UnknownNameError(
            f"unknown phantom layout {layout!r}; known layouts: {', '.join(list_phantom_layouts())}"
        )
    return LAYOUTS[key]


def write_phantom_dataset(
    out_dir: str | Path,
    layout: str,
    cases: int = 4,
    size: int = 64,
    site: int = 0,
    seed: int = 0,
    modality: str | None = None,
    tumors: bool = True,
    *,
    unlabeled: int = 0,
    tumor_probability: float | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write a phantom data set in a public layout; return the layout's top folder.

    The whole tree is written into a temporary folder beside ``out_dir`` and renamed onto it
    at the end: an error leaves ``out_dir`` as it was.

    Args:
        out_dir: folder to create (must be missing or empty unless ``overwrite``).
        layout: layout name (:func:`list_phantom_layouts`; module docstring).
        cases: number of labeled cases.
        size: field of view in nominal 1 mm voxels per axis.
        site: acquisition site (:mod:`medsegzoo.data.phantoms.sites`).
        seed: data set seed; case ``i`` is the patient ``(seed, i)``.
        modality: "CT" or "MR" (default: the layout's).
        tumors: draw lesions (the layout decides which kinds: a KiTS-like set draws kidney
            tumours in every case, an MSD-Pancreas-like set pancreas tumours, ...).
        unlabeled: number of images without labels, written where the layout keeps those.
        tumor_probability: probability that a case has tumours (default: the layout's, e.g. 1.0
            for KiTS19 where every case has one; 0.7 for general abdominal sets).
        overwrite: replace a non-empty ``out_dir``.
        progress: called with one line per written case.

    Returns:
        The layout's top folder (``out_dir`` itself for layouts without a wrapper folder).

    Raises:
        UnknownNameError: unknown layout.
        MedSegZooError: ``out_dir`` is not empty (and not ``overwrite``), bad counts, size,
            site, seed or modality.
    """
    spec = resolve_layout(layout, modality.upper() if modality else None)
    modality = (modality or spec.modality).upper()
    if int(cases) < 1 or int(unlabeled) < 0:
        raise MedSegZooError(
            f"need at least one labeled case and a non-negative number of unlabeled ones, got cases={cases}, unlabeled={unlabeled}"
        )
    if unlabeled and not spec.holds_unlabeled:
        raise MedSegZooError(
            f"layout {spec.name!r} has no place for unlabeled images (every case of the real data set is labeled); use unlabeled=0"
        )
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise MedSegZooError(
            f"{out}: exists and is not empty; choose another folder or pass overwrite (--overwrite)"
        )
    site_obj = get_site(site)
    lesions = spec.lesions if spec.lesions is not None else DEFAULT_LESIONS
    if tumor_probability is not None:
        probability = float(tumor_probability)
    else:
        probability = (
            spec.tumor_probability
            if spec.tumor_probability is not None
            else DEFAULT_TUMOR_PROBABILITY
        )

    def make(index: int) -> Phantom:
        return make_phantom(
            size,
            seed=[int(seed), index],
            site=site_obj,
            modality=modality,
            tumors=tumors and bool(lesions),
            anatomy=spec.anatomy,
            tumor_probability=probability,
            lesion_kinds=lesions,
        )

    make(0)  # validate every argument before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        ctx = LayoutContext(tmp, spec, int(cases), int(unlabeled), make, site_obj)
        if progress is not None:
            ctx.make = _reporting(make, progress, spec.name)
        root = spec.writer(ctx)
        relative_root = root.relative_to(tmp)
        atomic_write_json(
            tmp / MANIFEST_NAME,
            {
                "layout": spec.name,
                "dataset": spec.dataset,
                "root": relative_root.as_posix() or ".",
                "cases": int(cases),
                "unlabeled": int(unlabeled),
                "size": int(size),
                "site": site_obj.index,
                "seed": int(seed),
                "modality": modality,
                "tumors": bool(tumors),
                "tumor_probability": probability,
                "records": ctx.records,
            },
        )
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / relative_root


def _reporting(
    make: Callable[[int], Phantom], progress: Callable[[str], None], layout: str
) -> Callable[[int], Phantom]:
    import time

    def wrapped(index: int) -> Phantom:
        start = time.perf_counter()
        phantom = make(index)
        progress(
            f"{layout}: case {index} generated in {time.perf_counter() - start:.2f} s, shape {tuple(phantom.image.shape)}"
        )
        return phantom

    return wrapped


def _replace_folder(new: Path, out: Path) -> None:
    """Rename ``new`` onto ``out``, removing a previous ``out`` only once ``new`` is in place."""
    if not out.exists():
        new.rename(out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old = trash / "old"
    out.rename(old)
    try:
        new.rename(out)
    except BaseException:
        old.rename(out)
        raise
    with contextlib.suppress(OSError):
        shutil.rmtree(trash)
