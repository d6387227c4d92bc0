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

Modules: :mod:`.base` (:class:`LayoutSpec`, :class:`LayoutContext`), :mod:`._writing` (helpers
the writers share), one module per public layout named like its reader in
:mod:`medsegzoo.data.readers` (:mod:`.msd`, :mod:`.btcv`, :mod:`.amos`, :mod:`.word`,
:mod:`.flare22`, :mod:`.kits19`, :mod:`.lits`, :mod:`.chaos`, :mod:`.ct_org`,
:mod:`.abdomenct1k`, :mod:`.pancreas_ct`, :mod:`.la`, :mod:`.brats2019`) and
:mod:`.mask_folders` for the per-class mask layouts (TotalSegmentator, AbdomenAtlas). This
module holds the registry (:data:`LAYOUTS`) and the entry point :func:`write_phantom_dataset`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from medsegzoo.data.phantoms.generator import DEFAULT_LESIONS, Phantom, make_phantom
from medsegzoo.data.phantoms.layouts.abdomenct1k import write_abdomenct1k
from medsegzoo.data.phantoms.layouts.amos import write_amos
from medsegzoo.data.phantoms.layouts.base import LayoutContext, LayoutSpec
from medsegzoo.data.phantoms.layouts.brats2019 import write_brats2019
from medsegzoo.data.phantoms.layouts.btcv import write_btcv
from medsegzoo.data.phantoms.layouts.chaos import write_chaos
from medsegzoo.data.phantoms.layouts.ct_org import write_ct_org
from medsegzoo.data.phantoms.layouts.flare22 import write_flare22
from medsegzoo.data.phantoms.layouts.kits19 import write_kits19
from medsegzoo.data.phantoms.layouts.la import write_la
from medsegzoo.data.phantoms.layouts.lits import write_lits
from medsegzoo.data.phantoms.layouts.mask_folders import write_mask_folders
from medsegzoo.data.phantoms.layouts.msd import write_msd
from medsegzoo.data.phantoms.layouts.pancreas_ct import write_pancreas_ct
from medsegzoo.data.phantoms.layouts.word import write_word
from medsegzoo.data.phantoms.sites import get_site
from medsegzoo.errors import MedSegZooError, UnknownNameError
from medsegzoo.utils.atomic import atomic_write_json

__all__ = [
    "LAYOUTS",
    "MANIFEST_NAME",
    "LayoutContext",
    "LayoutSpec",
    "list_phantom_layouts",
    "resolve_layout",
    "write_phantom_dataset",
]

MANIFEST_NAME = "phantom_manifest.json"
DEFAULT_TUMOR_PROBABILITY = 0.7


def _msd(
    name: str,
    task: tuple[str, str, str, bool, int],
    lesions: tuple[str, ...] | None,
    probability: float | None,
) -> LayoutSpec:
    return LayoutSpec(
        name,
        name,
        write_msd,
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
        LayoutSpec("btcv", "btcv", write_btcv),
        LayoutSpec("amos", "amos", write_amos),
        LayoutSpec("amos_mr", "amos_mr", write_amos, modality="MR"),
        LayoutSpec("word", "word", write_word),
        LayoutSpec("flare22", "flare22", write_flare22),
        LayoutSpec(
            "totalsegmentator",
            "totalsegmentator",
            write_mask_folders,
            options={"ids": "totalsegmentator"},
        ),
        LayoutSpec(
            "abdomenatlas",
            "abdomenatlas",
            write_mask_folders,
            options={"ids": "abdomenatlas"},
            holds_unlabeled=False,
        ),
        LayoutSpec(
            "abdomenatlas1_1",
            "abdomenatlas1_1",
            write_mask_folders,
            options={"ids": "abdomenatlas"},
            holds_unlabeled=False,
        ),
        LayoutSpec(
            "kits19",
            "kits19",
            write_kits19,
            lesions=("kidney_tumor", "kidney_cyst"),
            tumor_probability=1.0,
        ),
        LayoutSpec("lits", "lits", write_lits, lesions=("liver_tumor",), tumor_probability=0.85),
        LayoutSpec("chaos_mr", "chaos_mr", write_chaos, modality="MR", lesions=()),
        LayoutSpec("chaos_ct", "chaos_ct", write_chaos, lesions=()),
        LayoutSpec("ct_org", "ct_org", write_ct_org),
        LayoutSpec("abdomenct1k", "abdomenct1k", write_abdomenct1k),
        LayoutSpec("pancreas_ct", "pancreas_ct", write_pancreas_ct, lesions=()),
        LayoutSpec("la", "la", write_la, anatomy="left_atrium", modality="MR", lesions=()),
        LayoutSpec(
            "brats2019", "brats2019", write_brats2019, anatomy="brain", modality="MR", lesions=()
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
    variation: float = 1.0,
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
        variation: how much patients differ (left-atrium layouts only; see
            :func:`~medsegzoo.data.phantoms.generator.make_phantom`).

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
            variation=variation,
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
