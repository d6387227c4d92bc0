"""Canonical names and synonyms of medsegzoo.taxonomy."""

from __future__ import annotations

import pytest

from medsegzoo.errors import UnknownNameError
from medsegzoo.taxonomy import all_class_names, canonical_name, display_name, side_parts


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("postcava", "postcava"),
        ("inferior_vena_cava", "postcava"),
        ("IVC", "postcava"),
        ("Inferior Vena Cava", "postcava"),
        ("gall_bladder", "gallbladder"),
        ("Gall-Bladder", "gallbladder"),
        ("kidney_r", "kidney_right"),
        ("right kidney", "kidney_right"),
        ("Right_Kidney", "kidney_right"),
        ("kidney_right", "kidney_right"),
        ("RKid", "kidney_right"),
        ("kidney_left", "kidney_left"),
        ("left kidney", "kidney_left"),
        ("adrenal_gland_left", "adrenal_gland_left"),
        ("left adrenal gland", "adrenal_gland_left"),
        ("RAG", "adrenal_gland_right"),
        ("right adrenal", "adrenal_gland_right"),
        ("adrenal", "adrenal_gland"),
        ("urinary_bladder", "bladder"),
        ("prostate/uterus", "prostate_uterus"),
        ("portal vein and splenic vein", "portal_vein_and_splenic_vein"),
        ("small_bowel", "intestine"),
        ("heart_atrium_left", "left_atrium"),
        ("vertebrae_C1", "vertebrae_c1"),
        ("kidney tumour", "kidney_tumor"),
        ("left head of femur", "femur_head_left"),
    ],
)
def test_synonyms_resolve_to_canonical(spelling: str, canonical: str) -> None:
    assert canonical_name(spelling) == canonical


def test_canonical_names_are_snake_case_and_fixed_points() -> None:
    names = all_class_names()
    assert len(names) > 140  # core classes + every TotalSegmentator structure
    for name in names:
        assert name == name.lower() and " " not in name and "-" not in name
        assert canonical_name(name) == name


def test_unknown_class_names_the_name_and_close_matches() -> None:
    with pytest.raises(UnknownNameError) as err:
        canonical_name("kidny_rigth")
    message = str(err.value)
    assert "kidny_rigth" in message
    assert "kidney_right" in message


def test_unknown_class_without_close_match_still_names_it() -> None:
    with pytest.raises(UnknownNameError, match="zzqx"):
        canonical_name("zzqx")


def test_display_names_and_side_parts() -> None:
    assert display_name("kidney_right") == "right kidney"
    assert display_name("ivc") == "inferior vena cava"
    assert side_parts("kidneys") == ("kidney_left", "kidney_right")
    assert side_parts("adrenal") == ("adrenal_gland_left", "adrenal_gland_right")
    assert side_parts("lung") == ("lung_left", "lung_right")
    assert side_parts("liver") is None
