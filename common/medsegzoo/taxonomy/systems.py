"""Label systems of the methods (the class order of a network's outputs).

A :class:`LabelSystem` is an ordered tuple of canonical classes; output channel / label value
``i + 1`` is ``classes[i]`` and 0 is background. Every data set is also a label system (its
native map), so conversions go between any two names that :func:`get_label_system` knows.

* ``universal32``: CLIP-Driven Universal Model, 32 classes (REFERENCE.md section 2).
* ``aeval8`` / ``aeval10``: A-Eval's shared classes in the order of REFERENCE.md section 3's
  table (liver, right kidney, spleen, pancreas, gallbladder, esophagus, stomach, left kidney;
  the 10-class revision appends the right and left adrenal glands).
* ``touchstone9``: Touchstone's 9 classes in the order of its tables (REFERENCE.md section 5).
* ``tct5``: TCT's 5 classes in the order the TCT paper uses everywhere (dataset figure 3,
  tables 1 and 3): left kidney, right kidney, liver, pancreas, spleen. ``tct4_mr`` is its MR
  benchmark (CHAOS-MR: left kidney, right kidney, liver, spleen; table 2).
* ``brats_whole_tumor``: one class, the BraTS whole tumor used by TCSeg.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.taxonomy.datasets import get_dataset, list_datasets, resolve_dataset_name
from medsegzoo.taxonomy.names import canonical_name, normalize_name

__all__ = ["LabelSystem", "get_label_system", "list_label_systems"]


@dataclass(frozen=True)
class LabelSystem:
    """An ordered set of classes and the label value of each.

    Attributes:
        name: lower-case key ("universal32", or a data set name).
        classes: canonical class names; ``classes[i]`` has label value ``values[i]``.
        values: label values, ``1..N`` for the method systems; a data set's native values
            (which may have gaps, e.g. BraTS 1, 2, 4) when the system is a data set.
        display: readable description.
    """

    name: str
    classes: tuple[str, ...]
    values: tuple[int, ...] = field(default=())
    display: str = ""

    def __post_init__(self) -> None:
        if not self.values:
            object.__setattr__(self, "values", tuple(range(1, len(self.classes) + 1)))
        if len(self.values) != len(self.classes):
            raise DataValidationError(
                f"label system {self.name!r}: {len(self.classes)} classes "
                f"but {len(self.values)} values"
            )

    @property
    def labels(self) -> dict[int, str]:
        """Label value -> canonical class name."""
        return dict(zip(self.values, self.classes, strict=True))

    @property
    def num_classes(self) -> int:
        """Number of foreground classes."""
        return len(self.classes)

    def index_of(self, name: str) -> int:
        """Label value of a class in this system.

        Args:
            name: class name in any spelling.

        Returns:
            Its label value.

        Raises:
            UnknownNameError: the class is not part of this system.
        """
        canonical = canonical_name(name)
        if canonical not in self.classes:
            raise UnknownNameError(
                f"label system {self.name!r} has no class {canonical!r}; "
                f"its classes: {', '.join(self.classes)}"
            )
        return self.values[self.classes.index(canonical)]


UNIVERSAL32: tuple[str, ...] = (
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
    "duodenum",
    "hepatic_vessel",
    "lung_right",
    "lung_left",
    "colon",
    "intestine",
    "rectum",
    "bladder",
    "prostate_uterus",
    "femur_head_left",
    "femur_head_right",
    "celiac_trunk",
    "kidney_tumor",
    "liver_tumor",
    "pancreas_tumor",
    "hepatic_vessel_tumor",
    "lung_tumor",
    "colon_tumor",
    "kidney_cyst",
)
AEVAL8: tuple[str, ...] = (
    "liver",
    "kidney_right",
    "spleen",
    "pancreas",
    "gallbladder",
    "esophagus",
    "stomach",
    "kidney_left",
)
AEVAL10: tuple[str, ...] = AEVAL8 + ("adrenal_gland_right", "adrenal_gland_left")
TOUCHSTONE9: tuple[str, ...] = (
    "spleen",
    "kidney_right",
    "kidney_left",
    "gallbladder",
    "liver",
    "stomach",
    "aorta",
    "postcava",
    "pancreas",
)
TCT5: tuple[str, ...] = ("kidney_left", "kidney_right", "liver", "pancreas", "spleen")
TCT4_MR: tuple[str, ...] = ("kidney_left", "kidney_right", "liver", "spleen")

_SYSTEMS: dict[str, LabelSystem] = {
    s.name: s
    for s in (
        LabelSystem("universal32", UNIVERSAL32, display="CLIP-Driven Universal Model, 32 classes"),
        LabelSystem("aeval8", AEVAL8, display="A-Eval, 8 shared abdominal organs"),
        LabelSystem("aeval10", AEVAL10, display="A-Eval revision, 8 organs + adrenal glands"),
        LabelSystem("touchstone9", TOUCHSTONE9, display="Touchstone benchmark, 9 organs"),
        LabelSystem("tct5", TCT5, display="TCT partially labeled CT benchmark, 5 organs"),
        LabelSystem("tct4_mr", TCT4_MR, display="TCT CHAOS-MR benchmark, 4 organs"),
        LabelSystem("brats_whole_tumor", ("brain_tumor",), display="BraTS whole tumor (binary)"),
    )
}
_SYSTEM_ALIASES = {
    "universal": "universal32",
    "clip_universal": "universal32",
    "aeval": "aeval8",
    "a_eval": "aeval8",
    "a_eval8": "aeval8",
    "a_eval10": "aeval10",
    "touchstone": "touchstone9",
    "tct": "tct5",
    "tct_mr": "tct4_mr",
    "brats_wt": "brats_whole_tumor",
}


# Which universal32 classes (1-based) each training set labels, as REFERENCE.md section 2
# lists them from the Universal Model's public code. Keys are medsegzoo data set names.
# labeled_classes() derives the same sets from the native maps, except BTCV: the table
# includes duodenum (14), which the 13-class BTCV release does not label.
UNIVERSAL_REFERENCE_LABELED: dict[str, tuple[int, ...]] = {
    "btcv": tuple(range(1, 15)),
    "chaos_ct": (6,),
    "lits": (6, 27),
    "kits21": (2, 3, 26, 32),
    "word": (1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 14, 18, 19, 20, 21, 23, 24),
    "abdomenct1k": (1, 2, 3, 6, 11),
    "amos": (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 21, 22),
    "ct_org": (2, 3, 6, 16, 17, 21),
    "msd_liver": (6, 27),
    "msd_lung": (30,),
    "msd_pancreas": (11, 28),
    "msd_hepatic_vessel": (15, 29),
    "msd_spleen": (1,),
    "msd_colon": (31,),
}


def get_label_system(name: str) -> LabelSystem:
    """Return a method's label system, or a data set's native map as a label system.

    Args:
        name: "universal32", "aeval8", "aeval10", "touchstone9", "tct5", "tct4_mr",
            "brats_whole_tumor", or any data set name known to :func:`get_dataset`.

    Returns:
        The :class:`LabelSystem`.

    Raises:
        UnknownNameError: neither a label system nor a data set; the message lists both.
    """
    if isinstance(name, str):
        key = normalize_name(name)
        key = _SYSTEM_ALIASES.get(key, key)
        if key in _SYSTEMS:
            return _SYSTEMS[key]
        dataset = resolve_dataset_name(name)
        if dataset is not None:
            spec = get_dataset(dataset)
            values = tuple(sorted(spec.labels))
            return LabelSystem(
                spec.name,
                tuple(spec.labels[v] for v in values),
                values,
                display=spec.display or spec.name,
            )
    raise UnknownNameError(
        f"unknown label system {name!r}; method systems: {', '.join(sorted(_SYSTEMS))}; "
        f"data sets: {', '.join(list_datasets())}"
    )


def list_label_systems() -> tuple[str, ...]:
    """Names of the method label systems (data sets are label systems too)."""
    return tuple(sorted(_SYSTEMS))
