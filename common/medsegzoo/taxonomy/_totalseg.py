"""TotalSegmentator class lists (file stems), as published by the TotalSegmentator project.

Pure data, no logic. Two orders matter in this project:

* ``V2_OFFICIAL``: the 117 classes of TotalSegmentator v2 in the official label order
  (index i + 1 = ``V2_OFFICIAL[i]``), checked against ``class_map["total"]`` of the
  TotalSegmentator repository (``totalsegmentator/map_to_binary.py``).
* ``V1_CLASSES``: the 104 classes of TotalSegmentator v1. The STU-Net checkpoints were
  trained with these names *sorted as Python strings* (``sorted(V1_CLASSES)``), not in
  TotalSegmentator's own order; checked against STU-Net's ``label_orders.json``
  (liver 40, kidney_right 39, spleen 77, pancreas 46, gallbladder 15, esophagus 11,
  stomach 78, kidney_left 38).

The names are the mask file stems of the per-class layout
(``<case>/segmentations/<stem>.nii.gz``); ``medsegzoo.taxonomy.names`` maps them to
canonical names (e.g. ``inferior_vena_cava`` -> ``postcava``).
"""

from __future__ import annotations

_RIBS_LEFT = tuple(f"rib_left_{i}" for i in range(1, 13))
_RIBS_RIGHT = tuple(f"rib_right_{i}" for i in range(1, 13))
# vertebrae from caudal to cranial, the order both official lists use
_LUMBAR_TO_CERVICAL = (
    tuple(f"vertebrae_L{i}" for i in range(5, 0, -1))
    + tuple(f"vertebrae_T{i}" for i in range(12, 0, -1))
    + tuple(f"vertebrae_C{i}" for i in range(7, 0, -1))
)

_LIMB_BONES = (
    "humerus_left",
    "humerus_right",
    "scapula_left",
    "scapula_right",
    "clavicula_left",
    "clavicula_right",
    "femur_left",
    "femur_right",
    "hip_left",
    "hip_right",
)
_HIP_AND_BACK_MUSCLES = tuple(
    f"{muscle}_{side}"
    for muscle in (
        "gluteus_maximus",
        "gluteus_medius",
        "gluteus_minimus",
        "autochthon",
        "iliopsoas",
    )
    for side in ("left", "right")
)
_ILIAC_VESSELS = ("iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right")

V1_CLASSES: tuple[str, ...] = (
    (
        "spleen",
        "kidney_right",
        "kidney_left",
        "gallbladder",
        "liver",
        "stomach",
        "aorta",
        "inferior_vena_cava",
        "portal_vein_and_splenic_vein",
        "pancreas",
        "adrenal_gland_right",
        "adrenal_gland_left",
        "lung_upper_lobe_left",
        "lung_lower_lobe_left",
        "lung_upper_lobe_right",
        "lung_middle_lobe_right",
        "lung_lower_lobe_right",
    )
    + _LUMBAR_TO_CERVICAL
    + (
        "esophagus",
        "trachea",
        "heart_myocardium",
        "heart_atrium_left",
        "heart_ventricle_left",
        "heart_atrium_right",
        "heart_ventricle_right",
        "pulmonary_artery",
        "brain",
    )
    + _ILIAC_VESSELS
    + (
        "small_bowel",
        "duodenum",
        "colon",
    )
    + _RIBS_LEFT
    + _RIBS_RIGHT
    + _LIMB_BONES
    + (
        "sacrum",
        "face",
    )
    + _HIP_AND_BACK_MUSCLES
    + ("urinary_bladder",)
)

# The STU-Net checkpoints' output order: plain Python string sort of the v1 stems
# (so "rib_left_10" comes before "rib_left_2" and "vertebrae_C1" before "vertebrae_L1").
V1_STUNET_ALPHABETICAL: tuple[str, ...] = tuple(sorted(V1_CLASSES))

V2_OFFICIAL: tuple[str, ...] = (
    (
        "spleen",
        "kidney_right",
        "kidney_left",
        "gallbladder",
        "liver",
        "stomach",
        "pancreas",
        "adrenal_gland_right",
        "adrenal_gland_left",
        "lung_upper_lobe_left",
        "lung_lower_lobe_left",
        "lung_upper_lobe_right",
        "lung_middle_lobe_right",
        "lung_lower_lobe_right",
        "esophagus",
        "trachea",
        "thyroid_gland",
        "small_bowel",
        "duodenum",
        "colon",
        "urinary_bladder",
        "prostate",
        "kidney_cyst_left",
        "kidney_cyst_right",
        "sacrum",
        "vertebrae_S1",
    )
    + _LUMBAR_TO_CERVICAL
    + (
        "heart",
        "aorta",
        "pulmonary_vein",
        "brachiocephalic_trunk",
        "subclavian_artery_right",
        "subclavian_artery_left",
        "common_carotid_artery_right",
        "common_carotid_artery_left",
        "brachiocephalic_vein_left",
        "brachiocephalic_vein_right",
        "atrial_appendage_left",
        "superior_vena_cava",
        "inferior_vena_cava",
        "portal_vein_and_splenic_vein",
    )
    + _ILIAC_VESSELS
    + _LIMB_BONES
    + ("spinal_cord",)
    + _HIP_AND_BACK_MUSCLES
    + (
        "brain",
        "skull",
    )
    + _RIBS_LEFT
    + _RIBS_RIGHT
    + ("sternum", "costal_cartilages")
)

# Touchstone / AbdomenAtlas 1.0 per-class mask stems, and the 16 further stems of
# AbdomenAtlas 1.1 (25 classes in all).
ABDOMENATLAS_1_0_STEMS: tuple[str, ...] = (
    "aorta",
    "gall_bladder",
    "kidney_left",
    "kidney_right",
    "liver",
    "pancreas",
    "postcava",
    "spleen",
    "stomach",
)
ABDOMENATLAS_1_1_EXTRA_STEMS: tuple[str, ...] = (
    "adrenal_gland_left",
    "adrenal_gland_right",
    "bladder",
    "celiac_trunk",
    "colon",
    "duodenum",
    "esophagus",
    "femur_left",
    "femur_right",
    "hepatic_vessel",
    "intestine",
    "lung_left",
    "lung_right",
    "portal_vein_and_splenic_vein",
    "prostate",
    "rectum",
)
