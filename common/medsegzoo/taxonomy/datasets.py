"""Native label maps of the public data sets the medsegzoo bundles train and test on.

Each :class:`DatasetSpec` records the label values as distributed (background 0 omitted),
mapped to canonical class names, the modality, how labels are stored (one label map per
case, or one binary mask file per class) and which organs the data set does not split into
left and right (``merges``), so that conversions know to split them.

Sources of the tables: the challenge/data set descriptions and ``dataset.json`` files as
distributed (AMOS, MSD), the WORD and FLARE22 releases, TotalSegmentator's class map and
STU-Net's ``label_orders.json``; REFERENCE.md sections 1-5 of this project. docs/taxonomy.md
lists every table with its caveats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medsegzoo.errors import UnknownNameError
from medsegzoo.taxonomy._totalseg import (
    ABDOMENATLAS_1_0_STEMS,
    ABDOMENATLAS_1_1_EXTRA_STEMS,
    V1_STUNET_ALPHABETICAL,
    V2_OFFICIAL,
)
from medsegzoo.taxonomy.names import canonical_name, normalize_name, side_parts

Modality = Literal["CT", "MR"]
LabelStyle = Literal["label_map", "per_class_masks"]

__all__ = ["DatasetSpec", "get_dataset", "list_datasets"]


@dataclass(frozen=True)
class DatasetSpec:
    """Native labels of one public data set.

    Attributes:
        name: lower-case key ("btcv", "msd_pancreas", "totalsegmentator_stunet").
        labels: native label value -> canonical class name (background 0 omitted).
        modality: "CT" or "MR".
        label_style: "label_map" (one integer volume per case) or "per_class_masks" (one
            binary file per class, TotalSegmentator / AbdomenAtlas).
        mask_files: canonical name -> file stem of its mask (per-class-mask layouts only).
        merges: canonical classes whose left and right halves the data set labels as one
            (e.g. "kidney"); conversions split them by connected components.
        value_aliases: other raw values some releases store for a label
            (raw value -> native value, e.g. LA's 255 -> 1).
        display: full name of the data set.
        notes: caveats a user of the data set should know.
    """

    name: str
    labels: dict[int, str]
    modality: Modality
    label_style: LabelStyle = "label_map"
    mask_files: dict[str, str] = field(default_factory=dict)
    merges: tuple[str, ...] = ()
    value_aliases: dict[int, int] = field(default_factory=dict)
    display: str = ""
    notes: str = ""

    @property
    def classes(self) -> tuple[str, ...]:
        """Canonical class names in order of their native label value."""
        return tuple(self.labels[v] for v in sorted(self.labels))

    def index_of(self, name: str) -> int:
        """Native label value of a class.

        Args:
            name: class name in any spelling.

        Returns:
            The native value.

        Raises:
            UnknownNameError: the class is not labeled in this data set.
        """
        canonical = canonical_name(name)
        for value, label in self.labels.items():
            if label == canonical:
                return value
        raise UnknownNameError(
            f"data set {self.name!r} has no class {canonical!r}; "
            f"its classes: {', '.join(self.classes)}"
        )


def _spec(
    name: str,
    labels: dict[int, str],
    modality: Modality,
    *,
    label_style: LabelStyle = "label_map",
    mask_stems: dict[int, str] | None = None,
    value_aliases: dict[int, int] | None = None,
    display: str = "",
    notes: str = "",
) -> DatasetSpec:
    """Build a spec, canonicalising names and deriving ``merges`` and ``mask_files``."""
    canonical = {int(v): canonical_name(n) for v, n in labels.items()}
    if len(set(canonical.values())) != len(canonical):
        raise RuntimeError(f"taxonomy: data set {name!r} names a class twice")
    merges = tuple(c for c in canonical.values() if side_parts(c) is not None)
    mask_files = {canonical[v]: stem for v, stem in (mask_stems or {}).items()}
    return DatasetSpec(
        name=name,
        labels=canonical,
        modality=modality,
        label_style=label_style,
        mask_files=mask_files,
        merges=merges,
        value_aliases=dict(value_aliases or {}),
        display=display,
        notes=notes,
    )


def _enumerate(names: tuple[str, ...] | list[str]) -> dict[int, str]:
    return {i + 1: n for i, n in enumerate(names)}


_BTCV = _enumerate(
    [
        "spleen",
        "kidney_right",
        "kidney_left",
        "gallbladder",
        "esophagus",
        "liver",
        "stomach",
        "aorta",
        "postcava",
        "portal_vein_and_splenic_vein",
        "pancreas",
        "adrenal_gland_right",
        "adrenal_gland_left",
    ]
)
_AMOS = _enumerate(
    [
        "spleen",
        "kidney_right",
        "kidney_left",
        "gallbladder",
        "esophagus",
        "liver",
        "stomach",
        "aorta",
        "postcava",
        "pancreas",
        "adrenal_gland_right",
        "adrenal_gland_left",
        "duodenum",
        "bladder",
        "prostate_uterus",
    ]
)
_WORD = _enumerate(
    [
        "liver",
        "spleen",
        "kidney_left",
        "kidney_right",
        "stomach",
        "gallbladder",
        "esophagus",
        "pancreas",
        "duodenum",
        "colon",
        "intestine",
        "adrenal_gland",
        "rectum",
        "bladder",
        "femur_head_left",
        "femur_head_right",
    ]
)
_FLARE22 = _enumerate(
    [
        "liver",
        "kidney_right",
        "spleen",
        "pancreas",
        "aorta",
        "postcava",
        "adrenal_gland_right",
        "adrenal_gland_left",
        "gallbladder",
        "esophagus",
        "stomach",
        "duodenum",
        "kidney_left",
    ]
)
# AbdomenAtlas 1.1's 25 classes are the 25 organ classes of the universal taxonomy; its
# femur_left/right masks are taken as the femur heads (universal classes 23/24).
_ATLAS_CANONICAL = {"femur_left": "femur_head_left", "femur_right": "femur_head_right"}


def _per_class_masks(
    name: str,
    stems: tuple[str, ...],
    *,
    display: str,
    notes: str,
    rename: dict[str, str] | None = None,
) -> DatasetSpec:
    """A CT data set stored as one mask file per class; values follow the order of ``stems``."""
    rename = rename or {}
    return _spec(
        name,
        _enumerate([rename.get(stem, stem) for stem in stems]),
        "CT",
        label_style="per_class_masks",
        mask_stems=_enumerate(stems),
        display=display,
        notes=notes,
    )


_DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "btcv",
            _BTCV,
            "CT",
            display="BTCV Multi-Atlas Labeling Beyond the Cranial Vault (abdomen, 13 organs)",
        ),
        _spec(
            "amos",
            _AMOS,
            "CT",
            display="AMOS 2022 (CT part)",
            notes="label 15 is prostate in men and uterus in women (one class).",
        ),
        _spec(
            "amos_mr",
            _AMOS,
            "MR",
            display="AMOS 2022 (MR part)",
            notes="same 15-value map as the CT part; bladder and prostate/uterus are rarely "
            "annotated in MR.",
        ),
        _spec(
            "word",
            _WORD,
            "CT",
            display="WORD (Whole abdominal ORgan Dataset)",
            notes="label 12 holds both adrenal glands (split by connected components); "
            "15/16 are the femur heads; 11 'intestine' is the small intestine.",
        ),
        _spec("flare22", _FLARE22, "CT", display="FLARE 2022 (labeled part)"),
        _per_class_masks(
            "totalsegmentator",
            V2_OFFICIAL,
            display="TotalSegmentator v2 (117 classes, official order)",
            notes="femur_left/right are whole femurs (not the femur heads of WORD/universal).",
        ),
        _per_class_masks(
            "totalsegmentator_stunet",
            V1_STUNET_ALPHABETICAL,
            display="TotalSegmentator v1, 104 classes sorted alphabetically (STU-Net checkpoints)",
            notes="order of the published STU-Net checkpoints' 105 outputs (0 = background).",
        ),
        _per_class_masks(
            "abdomenatlas",
            ABDOMENATLAS_1_0_STEMS,
            display="AbdomenAtlas 1.0 / Touchstone (9 classes, one mask file per class)",
            notes="values are the alphabetical order of the mask stems; Touchstone's tables use "
            "the touchstone9 label system order.",
        ),
        _per_class_masks(
            "abdomenatlas1_1",
            ABDOMENATLAS_1_0_STEMS + ABDOMENATLAS_1_1_EXTRA_STEMS,
            display="AbdomenAtlas 1.1 (25 classes, one mask file per class)",
            notes="femur_left/right stems read as femur heads; 'prostate' stem merges into "
            "prostate_uterus in the universal system.",
            rename=_ATLAS_CANONICAL,
        ),
        _spec(
            "msd_brain_tumour",
            {1: "peritumoral_edema", 2: "necrotic_tumor_core", 3: "enhancing_tumor"},
            "MR",
            display="MSD Task01 BrainTumour",
            notes="MSD relabels BraTS: 1 edema, 2 non-enhancing tumor, 3 enhancing tumour.",
        ),
        _spec("msd_heart", {1: "left_atrium"}, "MR", display="MSD Task02 Heart (left atrium)"),
        _spec("msd_liver", {1: "liver", 2: "liver_tumor"}, "CT", display="MSD Task03 Liver"),
        _spec(
            "msd_hippocampus",
            {1: "hippocampus_anterior", 2: "hippocampus_posterior"},
            "MR",
            display="MSD Task04 Hippocampus",
        ),
        _spec(
            "msd_prostate",
            {1: "prostate_peripheral_zone", 2: "prostate_transition_zone"},
            "MR",
            display="MSD Task05 Prostate",
        ),
        _spec("msd_lung", {1: "lung_tumor"}, "CT", display="MSD Task06 Lung"),
        _spec(
            "msd_pancreas",
            {1: "pancreas", 2: "pancreas_tumor"},
            "CT",
            display="MSD Task07 Pancreas",
        ),
        _spec(
            "msd_hepatic_vessel",
            {1: "hepatic_vessel", 2: "hepatic_vessel_tumor"},
            "CT",
            display="MSD Task08 HepaticVessel",
        ),
        _spec("msd_spleen", {1: "spleen"}, "CT", display="MSD Task09 Spleen"),
        _spec("msd_colon", {1: "colon_tumor"}, "CT", display="MSD Task10 Colon"),
        _spec(
            "kits19",
            {1: "kidney", 2: "kidney_tumor"},
            "CT",
            display="KiTS19 (kidney and kidney tumor)",
            notes="both kidneys are one label; split left/right by connected components.",
        ),
        _spec(
            "kits21",
            {1: "kidney", 2: "kidney_tumor", 3: "kidney_cyst"},
            "CT",
            display="KiTS21 (kidney, tumor, cyst)",
            notes="both kidneys are one label; split left/right by connected components.",
        ),
        _spec(
            "lits", {1: "liver", 2: "liver_tumor"}, "CT", display="LiTS (liver tumor segmentation)"
        ),
        _spec(
            "chaos_mr",
            {63: "liver", 126: "kidney_right", 189: "kidney_left", 252: "spleen"},
            "MR",
            display="CHAOS MR (T1-DUAL / T2-SPIR), grey values of the PNG ground truth",
            notes="PNG masks store grey values; interpolated slices may hold nearby values "
            "(ranges 55-70, 110-135, 175-200, 240-255): round to the nearest class when reading.",
        ),
        _spec(
            "chaos_ct",
            {1: "liver"},
            "CT",
            value_aliases={255: 1},
            display="CHAOS CT (liver only)",
            notes="the PNG ground truth stores the liver as 255.",
        ),
        _spec(
            "ct_org",
            {1: "liver", 2: "bladder", 3: "lung", 4: "kidney", 5: "bone", 6: "brain"},
            "CT",
            display="CT-ORG",
            notes="lungs and kidneys are one label each; split left/right by connected components.",
        ),
        _spec(
            "abdomenct1k",
            {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"},
            "CT",
            display="AbdomenCT-1K",
            notes="both kidneys are one label; split left/right by connected components.",
        ),
        _spec("pancreas_ct", {1: "pancreas"}, "CT", display="NIH Pancreas-CT"),
        _spec(
            "la",
            {1: "left_atrium"},
            "MR",
            value_aliases={255: 1},
            display="Left Atrium (2018 Atrial Segmentation Challenge)",
            notes="the challenge's laendo.nrrd stores the atrium as 255; the preprocessed h5 "
            "release used by semi-supervised methods stores 1. Both are accepted.",
        ),
        _spec(
            "brats2019",
            {1: "necrotic_tumor_core", 2: "peritumoral_edema", 4: "enhancing_tumor"},
            "MR",
            display="BraTS 2019",
            notes="no label 3; whole tumor = union of 1, 2 and 4 (system 'brats_whole_tumor').",
        ),
    )
}

# Other spellings of data set names (normalised keys).
_DATASET_ALIASES: dict[str, str] = {
    "multi_atlas_labeling": "btcv",
    "amos22": "amos",
    "amos_ct": "amos",
    "flare2022": "flare22",
    "flare": "flare22",
    "total_segmentator": "totalsegmentator",
    "totalseg": "totalsegmentator",
    "totalsegmentator_v2": "totalsegmentator",
    "totalsegmentator_v1_alphabetical": "totalsegmentator_stunet",
    "stunet": "totalsegmentator_stunet",
    "abdomenatlas1_0": "abdomenatlas",
    "touchstone": "abdomenatlas",
    "task01_braintumour": "msd_brain_tumour",
    "task02_heart": "msd_heart",
    "task03_liver": "msd_liver",
    "task04_hippocampus": "msd_hippocampus",
    "task05_prostate": "msd_prostate",
    "task06_lung": "msd_lung",
    "task07_pancreas": "msd_pancreas",
    "task08_hepaticvessel": "msd_hepatic_vessel",
    "task09_spleen": "msd_spleen",
    "task10_colon": "msd_colon",
    "msd_hepaticvessel": "msd_hepatic_vessel",
    "msd_braintumour": "msd_brain_tumour",
    "kits": "kits19",
    "kits2019": "kits19",
    "kits2021": "kits21",
    "chaos": "chaos_mr",
    "ctorg": "ct_org",
    "abdomenct_1k": "abdomenct1k",
    "nih_pancreas": "pancreas_ct",
    "pancreas_nih": "pancreas_ct",
    "nih_pancreas_ct": "pancreas_ct",
    "la_heart": "la",
    "left_atrium": "la",
    "brats19": "brats2019",
    "brats_2019": "brats2019",
}


def resolve_dataset_name(name: str) -> str | None:
    """Key of a data set from any spelling, or None when unknown."""
    key = normalize_name(name)
    key = _DATASET_ALIASES.get(key, key)
    return key if key in _DATASETS else None


def get_dataset(name: str) -> DatasetSpec:
    """Return the native label map of a public data set.

    Args:
        name: data set name, case-insensitive ("BTCV", "msd-pancreas", "Task09_Spleen").

    Returns:
        Its :class:`DatasetSpec`.

    Raises:
        UnknownNameError: the data set is unknown; the message lists the known ones.
    """
    key = resolve_dataset_name(name) if isinstance(name, str) else None
    if key is None:
        raise UnknownNameError(
            f"unknown data set {name!r}; known data sets: {', '.join(sorted(_DATASETS))}"
        )
    return _DATASETS[key]


def list_datasets() -> tuple[str, ...]:
    """Names of every known data set, sorted."""
    return tuple(sorted(_DATASETS))
