"""Tissue properties of the phantoms: the abdominal tissue table (:data:`TISSUES`, CT
Hounsfield units per contrast phase and a T2-SPIR-like MR intensity per tissue, vertebral
bodies labeled per level), the class tuples of the three anatomies in label-value order,
where classes fall back when a data set does not label them (:data:`STRUCTURE_HOSTS`), and
the MR intensity tables of the left atrium (:data:`LA_MR`) and brain (:data:`BRAIN_MR`)
phantoms.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tissue:
    """Appearance of one tissue.

    Attributes:
        label: canonical class the tissue belongs to in the label map, or None (unlabeled
            tissue such as fat, muscle, intervertebral discs).
        hu: CT Hounsfield units in the portal-venous, arterial and non-contrast phase.
        mr: MR intensity (arbitrary units, 0-1000) of a fat-suppressed T2-weighted abdominal
            sequence (CHAOS T2-SPIR-like), or per sequence for the brain (see
            :data:`BRAIN_MR`).
    """

    label: str | None
    hu: tuple[float, float, float]
    mr: float


def _t(
    label: str | None,
    pv: float,
    art: float | None = None,
    nc: float | None = None,
    mr: float = 150.0,
) -> Tissue:
    return Tissue(label, (pv, pv if art is None else art, pv if nc is None else nc), mr)


# name -> tissue. Values: portal venous (the brief's reference table), arterial, non-contrast.
TISSUES: dict[str, Tissue] = {
    "air": _t(None, -1000.0, mr=0.0),
    "subcutaneous_fat": _t(None, -100.0, mr=90.0),
    "muscle": _t(None, 45.0, 50.0, 45.0, mr=180.0),
    "visceral_fat": _t(None, -70.0, mr=80.0),
    "perirenal_fat": _t(None, -90.0, mr=70.0),
    "disc": _t(None, 80.0, mr=300.0),
    "spleen": _t("spleen", 50.0, 90.0, 45.0, mr=520.0),
    "kidney_right": _t("kidney_right", 30.0, 140.0, 30.0, mr=460.0),
    "kidney_left": _t("kidney_left", 30.0, 140.0, 30.0, mr=460.0),
    "gallbladder": _t("gallbladder", 10.0, mr=900.0),
    "esophagus": _t("esophagus", 35.0, mr=260.0),
    "liver": _t("liver", 60.0, 70.0, 55.0, mr=260.0),
    "stomach": _t("stomach", 20.0, mr=350.0),
    "stomach_air": _t("stomach", -1000.0, mr=0.0),
    "aorta": _t("aorta", 150.0, 300.0, 45.0, mr=60.0),
    "postcava": _t("postcava", 150.0, 80.0, 45.0, mr=70.0),
    "portal_vein_and_splenic_vein": _t("portal_vein_and_splenic_vein", 140.0, 110.0, 45.0, mr=80.0),
    "hepatic_vessel": _t("hepatic_vessel", 140.0, 90.0, 40.0, mr=90.0),
    "celiac_trunk": _t("celiac_trunk", 150.0, 300.0, 45.0, mr=60.0),
    "pancreas": _t("pancreas", 40.0, 90.0, 40.0, mr=330.0),
    "adrenal_gland_right": _t("adrenal_gland_right", 25.0, 50.0, 20.0, mr=300.0),
    "adrenal_gland_left": _t("adrenal_gland_left", 25.0, 50.0, 20.0, mr=300.0),
    "duodenum": _t("duodenum", 30.0, mr=320.0),
    "colon": _t("colon", 10.0, mr=300.0),
    "colon_air": _t("colon", -900.0, mr=0.0),
    "intestine": _t("intestine", 35.0, mr=340.0),
    "rectum": _t("rectum", 15.0, mr=300.0),
    "bladder": _t("bladder", 5.0, mr=950.0),
    "prostate": _t("prostate", 40.0, mr=420.0),
    "prostate_uterus": _t("prostate_uterus", 45.0, mr=450.0),
    "femur_head_left": _t("femur_head_left", 500.0, mr=110.0),
    "femur_head_right": _t("femur_head_right", 500.0, mr=110.0),
    "lung_upper_lobe_left": _t("lung_upper_lobe_left", -820.0, mr=20.0),
    "lung_lower_lobe_left": _t("lung_lower_lobe_left", -800.0, mr=20.0),
    "lung_upper_lobe_right": _t("lung_upper_lobe_right", -820.0, mr=20.0),
    "lung_middle_lobe_right": _t("lung_middle_lobe_right", -830.0, mr=20.0),
    "lung_lower_lobe_right": _t("lung_lower_lobe_right", -800.0, mr=20.0),
    # lesions
    "liver_tumor": _t("liver_tumor", 25.0, 90.0, 35.0, mr=560.0),
    "hepatic_vessel_tumor": _t("hepatic_vessel_tumor", 30.0, 85.0, 35.0, mr=540.0),
    "kidney_tumor": _t("kidney_tumor", 75.0, 110.0, 35.0, mr=380.0),
    "kidney_cyst_left": _t("kidney_cyst_left", 8.0, mr=950.0),
    "kidney_cyst_right": _t("kidney_cyst_right", 8.0, mr=950.0),
    "pancreas_tumor": _t("pancreas_tumor", 15.0, 40.0, 30.0, mr=450.0),
    "lung_tumor": _t("lung_tumor", 25.0, 40.0, 25.0, mr=300.0),
    "colon_tumor": _t("colon_tumor", 45.0, 70.0, 40.0, mr=380.0),
}
# vertebral bodies (sacrum to T9, caudal to cranial), labeled per level like TotalSegmentator
VERTEBRAE: tuple[str, ...] = (
    "sacrum",
    "vertebrae_l5",
    "vertebrae_l4",
    "vertebrae_l3",
    "vertebrae_l2",
    "vertebrae_l1",
    "vertebrae_t12",
    "vertebrae_t11",
    "vertebrae_t10",
    "vertebrae_t9",
)
for _name in VERTEBRAE:
    TISSUES[_name] = _t(_name, 400.0, mr=120.0)

# Labeled structures (canonical names) of the abdomen phantom, in label-value order: the
# labels of the tissue table in its order (stomach air is labeled stomach, so names repeat).
ABDOMEN_CLASSES: tuple[str, ...] = tuple(
    dict.fromkeys(t.label for t in TISSUES.values() if t.label is not None)
)
# Where a class falls back to when a data set labels neither it nor (through the taxonomy's
# parent rules) anything above it: vessels inside the liver belong to the liver, vertebrae to
# "bone" (CT-ORG), femur heads to the whole femur (TotalSegmentator).
STRUCTURE_HOSTS: dict[str, str] = {
    "hepatic_vessel": "liver",
    **{v: "bone" for v in VERTEBRAE},
    "femur_head_left": "femur_left",
    "femur_head_right": "femur_right",
}

# Left atrium (LGE-MRI-like, 2018 LA challenge) phantom.
LA_CLASSES: tuple[str, ...] = ("left_atrium",)
# Brain tumour (BraTS) phantom; MR intensities per sequence (flair, t1, t1ce, t2).
BRAIN_CLASSES: tuple[str, ...] = ("necrotic_tumor_core", "peritumoral_edema", "enhancing_tumor")
BRAIN_SEQUENCES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
BRAIN_MR: dict[str, tuple[float, float, float, float]] = {
    "background": (0.0, 0.0, 0.0, 0.0),
    "csf": (120.0, 150.0, 150.0, 900.0),
    "grey_matter": (450.0, 430.0, 450.0, 560.0),
    "white_matter": (380.0, 650.0, 650.0, 400.0),
    "peritumoral_edema": (860.0, 350.0, 360.0, 800.0),
    "enhancing_tumor": (620.0, 400.0, 950.0, 650.0),
    "necrotic_tumor_core": (300.0, 250.0, 260.0, 860.0),
}
LA_MR: dict[str, float] = {
    "air": 0.0,
    "lung": 30.0,
    "chest_wall": 220.0,
    "fat": 650.0,
    "myocardium": 110.0,
    "blood": 420.0,
    "left_atrium": 440.0,
    "spine": 160.0,
}
