"""Canonical class names, their synonyms and how classes relate to each other.

Every label in medsegzoo is named by one canonical snake_case name (``kidney_right``,
``postcava``, ``gallbladder``). Data sets and methods spell the same structure in many
ways ("right kidney", "kidney_r", "RKid", "inferior_vena_cava", "IVC", "gall_bladder"); all
of them resolve through :func:`canonical_name`, which ignores case, spaces, hyphens and
slashes.

Classes are linked by three relations that conversions between label systems use:

* ``part``: the class is a part of a larger one, and the parts together make the whole
  (``kidney_left`` and ``kidney_right`` are the parts of ``kidney``; the lung lobes are the
  parts of ``lung_left`` / ``lung_right``). A part always merges into its whole.
* ``lesion``: the class lies inside an organ whose label in the source excludes it
  (``kidney_tumor`` in ``kidney``). It merges into the organ only when the source data set
  labels that organ, otherwise the organ label would be a tumor-only fragment.
* ``subtype``: the class is a kind of a broader class (``prostate`` is a
  ``prostate_uterus``; a ``hepatic_vessel_tumor`` is a ``liver_tumor``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

from medsegzoo.errors import UnknownNameError
from medsegzoo.taxonomy._totalseg import V1_CLASSES, V2_OFFICIAL

Relation = Literal["part", "lesion", "subtype"]

__all__ = [
    "ClassInfo",
    "Relation",
    "all_class_names",
    "canonical_name",
    "children",
    "class_info",
    "display_name",
    "normalize_name",
    "side_parts",
]


@dataclass(frozen=True)
class ClassInfo:
    """One canonical class.

    Attributes:
        name: canonical snake_case name.
        synonyms: other spellings (already normalised or not; they are normalised on use).
        parents: ``(parent canonical name, relation)`` pairs, most specific first.
        display: human readable name ("right kidney"), e.g. for text prompts.
    """

    name: str
    synonyms: tuple[str, ...] = ()
    parents: tuple[tuple[str, Relation], ...] = ()
    display: str = ""

    @property
    def display_name(self) -> str:
        """Readable name: the explicit one, else derived from the snake_case name."""
        return self.display or _derived_display(self.name)


def _derived_display(name: str) -> str:
    """ "kidney_right" -> "right kidney"; "vertebrae_l1" -> "vertebrae l1"."""
    for side in ("left", "right"):
        if name.endswith("_" + side):
            return f"{side} {name[: -len(side) - 1].replace('_', ' ')}"
    return name.replace("_", " ")


def _c(
    name: str,
    *synonyms: str,
    parents: tuple[tuple[str, Relation], ...] = (),
    display: str = "",
) -> ClassInfo:
    return ClassInfo(name=name, synonyms=synonyms, parents=parents, display=display)


def _part(whole: str) -> tuple[tuple[str, Relation], ...]:
    return ((whole, "part"),)


def _lesion(organ: str) -> tuple[tuple[str, Relation], ...]:
    return ((organ, "lesion"),)


# The classes of the method label systems and the public data sets. Left/right classes get
# "left_X" / "X_l" spellings automatically (see _auto_synonyms).
_CORE_CLASSES: tuple[ClassInfo, ...] = (
    _c("spleen", "spl", "lien"),
    _c("kidney", "kidneys", "kidney_left_and_right"),
    _c("kidney_right", "rkid", "r_kidney", "kidney_r", parents=_part("kidney")),
    _c("kidney_left", "lkid", "l_kidney", "kidney_l", parents=_part("kidney")),
    _c("gallbladder", "gall_bladder", "gall bladder"),
    _c("esophagus", "oesophagus", "esophag"),
    _c("liver", "liv", "hepar"),
    _c("stomach", "sto"),
    _c("aorta"),
    _c(
        "postcava",
        "inferior_vena_cava",
        "ivc",
        "vena_cava_inferior",
        "inferior_vena_cava_ivc",
        display="inferior vena cava",
    ),
    _c(
        "portal_vein_and_splenic_vein",
        "portal_vein",
        "portal_and_splenic_vein",
        "portal_splenic_vein",
        "portal_vein_splenic_vein",
        "pv_sv",
    ),
    _c("pancreas", "pan", "panc"),
    _c("adrenal_gland", "adrenal", "adrenals", "adrenal_glands", "adrenal_gland_left_and_right"),
    _c(
        "adrenal_gland_right",
        "right_adrenal",
        "adrenal_right",
        "r_adrenal_gland",
        "rag",
        parents=_part("adrenal_gland"),
        display="right adrenal gland",
    ),
    _c(
        "adrenal_gland_left",
        "left_adrenal",
        "adrenal_left",
        "l_adrenal_gland",
        "lag",
        parents=_part("adrenal_gland"),
        display="left adrenal gland",
    ),
    _c("duodenum"),
    _c("hepatic_vessel", "hepatic_vessels", "liver_vessel", "liver_vessels"),
    _c("lung", "lungs"),
    _c("lung_right", "right_lung", parents=_part("lung")),
    _c("lung_left", "left_lung", parents=_part("lung")),
    _c("lung_upper_lobe_left", parents=_part("lung_left")),
    _c("lung_lower_lobe_left", parents=_part("lung_left")),
    _c("lung_upper_lobe_right", parents=_part("lung_right")),
    _c("lung_middle_lobe_right", parents=_part("lung_right")),
    _c("lung_lower_lobe_right", parents=_part("lung_right")),
    _c("colon"),
    # WORD's "intestine" is the small intestine, TotalSegmentator's small_bowel
    _c("intestine", "small_bowel", "small_intestine"),
    _c("rectum"),
    _c("bladder", "urinary_bladder"),
    _c(
        "prostate_uterus", "prostate_and_uterus", "prostate_or_uterus", display="prostate or uterus"
    ),
    _c("prostate", parents=(("prostate_uterus", "subtype"),)),
    _c("prostate_peripheral_zone", "peripheral_zone", "pz", parents=_part("prostate")),
    _c("prostate_transition_zone", "transition_zone", "tz", parents=_part("prostate")),
    _c(
        "femur_head_left",
        "left_head_of_femur",
        "head_of_femur_left",
        "femoral_head_left",
        "left_femoral_head",
        display="left head of femur",
    ),
    _c(
        "femur_head_right",
        "right_head_of_femur",
        "head_of_femur_right",
        "femoral_head_right",
        "right_femoral_head",
        display="right head of femur",
    ),
    _c("celiac_trunk", "coeliac_trunk", "celiac_artery"),
    _c("kidney_tumor", "renal_tumor", "kidney_cancer", "renal_cancer", parents=_lesion("kidney")),
    _c("liver_tumor", "liver_cancer", "liver_lesion", "hepatic_tumor", parents=_lesion("liver")),
    _c(
        "pancreas_tumor",
        "pancreatic_tumor",
        "pancreas_cancer",
        "pancreatic_cancer",
        parents=_lesion("pancreas"),
    ),
    _c("hepatic_vessel_tumor", "liver_vessel_tumor", parents=(("liver_tumor", "subtype"),)),
    _c("lung_tumor", "lung_cancer", "lung_nodule", parents=_lesion("lung")),
    _c("colon_tumor", "colon_cancer", parents=_lesion("colon")),
    _c("kidney_cyst", "renal_cyst", parents=_lesion("kidney")),
    # TotalSegmentator v2: a cyst of one kidney; the side-specific organ is tried first
    # only when the target has no kidney_cyst class (see convert.resolve_class)
    _c("kidney_cyst_left", parents=(("kidney_cyst", "subtype"), ("kidney_left", "lesion"))),
    _c("kidney_cyst_right", parents=(("kidney_cyst", "subtype"), ("kidney_right", "lesion"))),
    _c("heart"),
    _c(
        "left_atrium",
        "heart_atrium_left",
        "atrium_left",
        "left_atrial_cavity",
        parents=_part("heart"),
    ),
    _c("heart_atrium_right", parents=_part("heart")),
    _c("heart_ventricle_left", parents=_part("heart")),
    _c("heart_ventricle_right", parents=_part("heart")),
    _c("heart_myocardium", parents=_part("heart")),
    _c("brain"),
    _c("bone", "bones", "skeleton"),
    _c("brain_tumor", "whole_tumor", "brain_tumour", "glioma", display="brain tumor"),
    _c(
        "necrotic_tumor_core",
        "ncr_net",
        "ncr",
        "necrotic_core",
        "non_enhancing_tumor",
        "non_enhancing_tumor_core",
        "necrotic_and_non_enhancing_tumor_core",
        parents=_part("brain_tumor"),
    ),
    _c("peritumoral_edema", "edema", "oedema", "peritumoral_oedema", parents=_part("brain_tumor")),
    _c("enhancing_tumor", "enhancing_tumour", "gd_enhancing_tumor", parents=_part("brain_tumor")),
    _c("hippocampus"),
    _c("hippocampus_anterior", "anterior_hippocampus", parents=_part("hippocampus")),
    _c("hippocampus_posterior", "posterior_hippocampus", parents=_part("hippocampus")),
)

_SEPARATORS = re.compile(r"[\s\-/.,;:&+]+")
_UNDERSCORES = re.compile(r"_+")


def normalize_name(name: str) -> str:
    """Lower case; spaces, hyphens, slashes and dots become single underscores.

    Args:
        name: any spelling of a class, data set or system name.

    Returns:
        The normalised key ("Right Kidney" -> "right_kidney", "prostate/uterus" ->
        "prostate_uterus").
    """
    key = _SEPARATORS.sub("_", name.strip().lower())
    return _UNDERSCORES.sub("_", key).strip("_")


def _auto_synonyms(name: str) -> tuple[str, ...]:
    """Spellings every left/right and tumor class accepts without listing them."""
    out: list[str] = []
    for side, short in (("left", "l"), ("right", "r")):
        suffix = "_" + side
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            out += [f"{side}_{stem}", f"{stem}_{short}", f"{short}_{stem}"]
    if "tumor" in name:
        out.append(name.replace("tumor", "tumour"))
    return tuple(out)


def _build_registry() -> tuple[dict[str, ClassInfo], dict[str, str]]:
    infos: dict[str, ClassInfo] = {}
    lookup: dict[str, str] = {}

    def add(info: ClassInfo) -> None:
        if info.name in infos:
            raise RuntimeError(f"taxonomy: class {info.name!r} defined twice")
        infos[info.name] = info
        for spelling in (info.name, *info.synonyms, *_auto_synonyms(info.name)):
            key = normalize_name(spelling)
            if lookup.get(key, info.name) != info.name:
                # a programming error in the tables above, caught by the test suite on import
                raise RuntimeError(
                    f"taxonomy: {spelling!r} names both {lookup[key]!r} and {info.name!r}"
                )
            lookup[key] = info.name

    for info in _CORE_CLASSES:
        add(info)
    # Every TotalSegmentator structure not already known becomes a canonical class under its
    # own (lower-case) stem: vertebrae_l1, rib_left_3, gluteus_maximus_left, ...
    for stem in (*V1_CLASSES, *V2_OFFICIAL):
        key = normalize_name(stem)
        if key not in lookup:
            add(ClassInfo(name=key))
    for info in infos.values():
        for parent, _ in info.parents:
            if parent not in infos:
                raise RuntimeError(f"taxonomy: parent {parent!r} of {info.name!r} is not a class")
    return infos, lookup


_CLASSES, _LOOKUP = _build_registry()


def _build_children() -> dict[str, tuple[tuple[str, Relation], ...]]:
    out: dict[str, list[tuple[str, Relation]]] = {}
    for info in _CLASSES.values():
        for parent, relation in info.parents:
            out.setdefault(parent, []).append((info.name, relation))
    return {k: tuple(v) for k, v in out.items()}


_CHILDREN = _build_children()
# merged organs: exactly two parts, "<name>_left" and "<name>_right"
_SIDE_PARTS: dict[str, tuple[str, str]] = {
    whole: (f"{whole}_left", f"{whole}_right")
    for whole, kids in _CHILDREN.items()
    if sorted(k for k, r in kids if r == "part") == [f"{whole}_left", f"{whole}_right"]
}


def canonical_name(name: str) -> str:
    """Return the canonical name of a class from any known spelling.

    Args:
        name: class name in any spelling ("Right Kidney", "kidney_r", "IVC", "gall-bladder").

    Returns:
        The canonical snake_case name ("kidney_right", "postcava", "gallbladder").

    Raises:
        UnknownNameError: the name is not a known class; the message lists close matches.
    """
    if not isinstance(name, str):
        raise UnknownNameError(f"class name must be a string, got {type(name).__name__}: {name!r}")
    key = normalize_name(name)
    if key in _LOOKUP:
        return _LOOKUP[key]
    close = difflib.get_close_matches(key, list(_LOOKUP), n=5, cutoff=0.6)
    hint = ", ".join(sorted({_LOOKUP[c] for c in close})) if close else "none"
    raise UnknownNameError(
        f"unknown class name {name!r} (normalised {key!r}); close matches: {hint}. "
        "See medsegzoo.taxonomy.all_class_names() for every known class."
    )


def class_info(name: str) -> ClassInfo:
    """Return the :class:`ClassInfo` of a class given in any spelling.

    Args:
        name: class name in any spelling.

    Returns:
        Its definition (canonical name, synonyms, parents, display name).

    Raises:
        UnknownNameError: the name is not a known class.
    """
    return _CLASSES[canonical_name(name)]


def display_name(name: str) -> str:
    """Readable name of a class ("kidney_right" -> "right kidney").

    Args:
        name: class name in any spelling.

    Returns:
        The display name.

    Raises:
        UnknownNameError: the name is not a known class.
    """
    return class_info(name).display_name


def children(name: str) -> tuple[tuple[str, Relation], ...]:
    """Classes that name ``name`` as a parent, with the relation.

    Args:
        name: class name in any spelling.

    Returns:
        ``(child, relation)`` pairs in definition order.

    Raises:
        UnknownNameError: the name is not a known class.
    """
    return _CHILDREN.get(canonical_name(name), ())


def side_parts(name: str) -> tuple[str, str] | None:
    """The (left, right) parts of a class whose halves other data sets label apart.

    Args:
        name: class name in any spelling ("kidney", "adrenal_gland", "lung").

    Returns:
        ``(name_left, name_right)`` canonical names, or None when the class has no such parts.

    Raises:
        UnknownNameError: the name is not a known class.
    """
    return _SIDE_PARTS.get(canonical_name(name))


def all_class_names() -> tuple[str, ...]:
    """Every canonical class name, sorted."""
    return tuple(sorted(_CLASSES))
