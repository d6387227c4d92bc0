"""Empty-mask conventions and NSD tolerance presets.

Surface metrics are undefined when a mask is empty, and benchmarks disagree on what to
report instead. A convention says, for each of the three empty cases, what every metric
is; the two presets follow the protocols this project reproduces (docs/evaluation.md):

=================  ==========================  ==========================
case               ``aeval`` (A-Eval/FLARE22)   ``touchstone``
=================  ==========================  ==========================
GT and pred empty  DSC = NSD = 1, HD95=ASSD=0  all NaN (class absent)
GT empty only      DSC = NSD = 0, distances    all NaN (class absent)
                   = volume diagonal
pred empty only    DSC = NSD = 0, distances    DSC = NSD = 0, distances
                   = volume diagonal            = volume diagonal
=================  ==========================  ==========================

"Volume diagonal" is the length in mm of the image's diagonal (shape x spacing), the
largest distance two points of the image can have. DeepMind's ``surface-distance`` returns
``inf`` there; a finite worst case keeps a missed organ in every mean (NaN would silently
leave it out and reward the miss) and the ``gt_present``/``pred_present`` columns of the
per-case table say which rows carry it.

NSD tolerances are per class, in mm, looked up by canonical class name. The FLARE22 table
(REFERENCE.md section 3) is also A-Eval's; the public A-Eval code indexes that list by
position for its own 8-class order, which gives several organs another organ's tolerance.
This project applies it by name (``aeval`` = ``flare22``). Touchstone uses 1.5 mm for
every class.

Each convention also has a general tolerance (:data:`GENERAL_TOLERANCE_MM`) for the classes
its preset table does not list (BTCV's portal vein, the colon, tumours, ...):
:func:`default_tolerances` is what the engine applies when no tolerance is given. For
``aeval`` it is 2 mm, the smallest of the FLARE22 table (its tolerance for vessels, adrenal
glands and gallbladder), so that no unlisted class is scored more leniently than any listed
one; for ``touchstone`` it is its 1.5 mm. A table given explicitly (``--tolerance flare22``)
has no such fallback: a class it lacks stops the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from medsegzoo.errors import DataValidationError, UnknownNameError

__all__ = [
    "AEVAL",
    "CONVENTIONS",
    "EMPTY_CASES",
    "GENERAL_TOLERANCE_MM",
    "NSD_TOLERANCES_MM",
    "TOUCHSTONE",
    "VOLUME_DIAGONAL",
    "EmptyCase",
    "EmptyMaskConvention",
    "ToleranceTable",
    "default_tolerances",
    "defaulted_classes",
    "empty_case",
    "get_convention",
    "get_tolerances",
    "tolerance_notes",
]

EmptyCase = Literal["both_empty", "gt_empty", "pred_empty"]
EMPTY_CASES: tuple[str, ...] = ("both_empty", "gt_empty", "pred_empty")

# placeholder for "the diagonal of the image volume in mm", resolved per case
VOLUME_DIAGONAL = "volume_diagonal"

Outcome = float | str  # a number (NaN allowed) or VOLUME_DIAGONAL


def empty_case(gt_present: bool, pred_present: bool) -> EmptyCase | None:
    """Which empty case a (ground truth, prediction) pair is; ``None`` when both are non-empty."""
    if gt_present and pred_present:
        return None
    if not gt_present and not pred_present:
        return "both_empty"
    return "gt_empty" if not gt_present else "pred_empty"


@dataclass(frozen=True)
class EmptyMaskConvention:
    """What each metric is when the ground truth and/or the prediction of a class is empty.

    Attributes:
        name: preset key ("aeval", "touchstone") or a name of your own.
        description: one line for reports.
        outcomes: empty case ("both_empty", "gt_empty", "pred_empty") -> metric -> value,
            a float (NaN allowed) or :data:`VOLUME_DIAGONAL`.
    """

    name: str
    description: str
    outcomes: Mapping[str, Mapping[str, Outcome]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in EMPTY_CASES if c not in self.outcomes]
        if missing:
            raise DataValidationError(f"convention {self.name!r} lacks outcomes for {missing}")
        frozen = {c: MappingProxyType(dict(self.outcomes[c])) for c in EMPTY_CASES}
        object.__setattr__(self, "outcomes", MappingProxyType(frozen))

    def __reduce__(self):
        # mapping proxies do not pickle; the engine sends conventions to worker processes
        return (type(self), (self.name, self.description, {c: dict(v) for c, v in self.outcomes.items()}))

    def value(self, case: EmptyCase, metric: str, volume_diagonal_mm: float) -> float:
        """The value of ``metric`` in empty ``case``.

        Args:
            case: "both_empty", "gt_empty" or "pred_empty".
            metric: "dsc", "nsd", "hd95" or "assd".
            volume_diagonal_mm: the image diagonal in mm (replaces :data:`VOLUME_DIAGONAL`).

        Returns:
            The number to report (NaN: undefined under this convention).

        Raises:
            UnknownNameError: a metric this convention says nothing about.
        """
        table = self.outcomes[case]
        if metric not in table:
            raise UnknownNameError(
                f"convention {self.name!r} defines no value of metric {metric!r} for {case}; "
                f"it knows {sorted(table)}"
            )
        outcome = table[metric]
        return float(volume_diagonal_mm) if outcome == VOLUME_DIAGONAL else float(outcome)


_NAN = math.nan
_MISSED = {"dsc": 0.0, "nsd": 0.0, "hd95": VOLUME_DIAGONAL, "assd": VOLUME_DIAGONAL}

AEVAL = EmptyMaskConvention(
    name="aeval",
    description=(
        "A-Eval/FLARE22: both empty = perfect (DSC = NSD = 1, HD95 = ASSD = 0); one side empty "
        "= DSC = NSD = 0 and distances = image diagonal"
    ),
    outcomes={
        "both_empty": {"dsc": 1.0, "nsd": 1.0, "hd95": 0.0, "assd": 0.0},
        "gt_empty": _MISSED,
        "pred_empty": _MISSED,
    },
)

TOUCHSTONE = EmptyMaskConvention(
    name="touchstone",
    description=(
        "Touchstone: class absent in the ground truth = NaN for every metric; present but not "
        "predicted = DSC = NSD = 0 and distances = image diagonal"
    ),
    outcomes={
        "both_empty": {"dsc": _NAN, "nsd": _NAN, "hd95": _NAN, "assd": _NAN},
        "gt_empty": {"dsc": _NAN, "nsd": _NAN, "hd95": _NAN, "assd": _NAN},
        "pred_empty": _MISSED,
    },
)

CONVENTIONS: Mapping[str, EmptyMaskConvention] = MappingProxyType({"aeval": AEVAL, "touchstone": TOUCHSTONE})


def get_convention(convention: str | EmptyMaskConvention) -> EmptyMaskConvention:
    """Return a convention preset by name (an :class:`EmptyMaskConvention` passes through).

    Raises:
        UnknownNameError: unknown preset name (the message lists the known ones).
    """
    if isinstance(convention, EmptyMaskConvention):
        return convention
    key = str(convention).strip().lower().replace("-", "").replace("_", "")
    if key not in CONVENTIONS:
        raise UnknownNameError(f"unknown empty-mask convention {convention!r}; known: {sorted(CONVENTIONS)}")
    return CONVENTIONS[key]


class ToleranceTable(Mapping[str, float]):
    """NSD tolerance in mm per canonical class name, with an optional default for every other class.

    Lookups accept any synonym the taxonomy knows ("ivc", "gall_bladder"). Iterating yields
    the classes listed explicitly (a table with only a default iterates over nothing).

    Args:
        name: preset name for messages.
        per_class: canonical class name -> tolerance in mm.
        default: tolerance for classes not listed; ``None``: such a class is an error.
    """

    def __init__(self, name: str, per_class: Mapping[str, float] | None = None, default: float | None = None) -> None:
        self.name = name
        self._per_class = {str(k): float(v) for k, v in (per_class or {}).items()}
        self.default = None if default is None else float(default)
        checked = dict(self._per_class) if self.default is None else {**self._per_class, "default": self.default}
        for cls, tol in checked.items():
            if not (tol >= 0 and math.isfinite(tol)):
                raise DataValidationError(
                    f"tolerance table {name!r}: the NSD tolerance of {cls} must be a finite number of mm >= 0, got {tol}"
                )

    def __getitem__(self, name: str) -> float:
        if name in self._per_class:
            return self._per_class[name]
        canonical = _canonical_or_none(name)
        if canonical is not None and canonical in self._per_class:
            return self._per_class[canonical]
        if self.default is not None:
            return self.default
        raise UnknownNameError(
            f"NSD tolerance table {self.name!r} has no tolerance for class {name!r}; it lists "
            f"{sorted(self._per_class)}. Pass a number (same tolerance for every class) or a table "
            f"that covers this class."
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._per_class)

    def __len__(self) -> int:
        return len(self._per_class)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except UnknownNameError:
            return False
        return True

    def defaulted(self, classes: Iterable[str]) -> list[str]:
        """The classes of ``classes`` that take the table's default (not listed by name)."""
        if self.default is None:
            return []
        return [c for c in classes if c not in self._per_class and _canonical_or_none(c) not in self._per_class]

    def __repr__(self) -> str:
        extra = f", default={self.default}" if self.default is not None else ""
        return f"ToleranceTable({self.name!r}, {self._per_class}{extra})"


def _canonical_or_none(name: str) -> str | None:
    # imported here: the taxonomy is only needed for synonyms, and only on a miss
    from medsegzoo.taxonomy import canonical_name

    try:
        return canonical_name(name)
    except UnknownNameError:
        return None


# FLARE22 challenge tolerances (mm), REFERENCE.md section 3; A-Eval uses the same table
_FLARE22_MM = {
    "liver": 5.0,
    "kidney_right": 3.0,
    "kidney_left": 3.0,
    "spleen": 3.0,
    "pancreas": 5.0,
    "aorta": 2.0,
    "postcava": 2.0,
    "adrenal_gland_right": 2.0,
    "adrenal_gland_left": 2.0,
    "gallbladder": 2.0,
    "esophagus": 3.0,
    "stomach": 5.0,
    "duodenum": 7.0,
}

NSD_TOLERANCES_MM: Mapping[str, ToleranceTable] = MappingProxyType(
    {
        "flare22": ToleranceTable("flare22", _FLARE22_MM),
        "aeval": ToleranceTable("aeval", _FLARE22_MM),
        "touchstone": ToleranceTable("touchstone", {}, default=1.5),
    }
)


def get_tolerances(spec: str | float | Mapping[str, float]) -> Mapping[str, float]:
    """Resolve a tolerance specification to a class -> mm mapping.

    Args:
        spec: a preset name ("flare22", "aeval", "touchstone"), a number (the same
            tolerance in mm for every class, also as a string such as "2.5"), or a mapping
            (returned as a :class:`ToleranceTable` without default).

    Returns:
        A mapping that answers ``table[class_name]`` in mm.

    Raises:
        UnknownNameError: an unknown preset name.
        DataValidationError: a negative or non-finite number.
    """
    if isinstance(spec, ToleranceTable):
        return spec
    if isinstance(spec, Mapping):
        return ToleranceTable("custom", spec)
    if isinstance(spec, (int, float)):
        return ToleranceTable(f"{float(spec):g} mm", {}, default=float(spec))
    text = str(spec).strip().lower()
    if text in NSD_TOLERANCES_MM:
        return NSD_TOLERANCES_MM[text]
    try:
        number = float(text)
    except ValueError:
        raise UnknownNameError(
            f"unknown NSD tolerance preset {spec!r}; known: {sorted(NSD_TOLERANCES_MM)}, or a number in mm"
        ) from None
    return ToleranceTable(f"{number:g} mm", {}, default=number)


# general NSD tolerance (mm) of each convention, for classes its preset table does not list
GENERAL_TOLERANCE_MM: Mapping[str, float] = MappingProxyType({"aeval": 2.0, "touchstone": 1.5})


def default_tolerances(convention: str | EmptyMaskConvention) -> ToleranceTable:
    """The NSD tolerances used when none is given: the convention's preset table, with the
    convention's general tolerance (:data:`GENERAL_TOLERANCE_MM`) for every class it does not list.

    Args:
        convention: convention name or object.

    Returns:
        A :class:`ToleranceTable` that answers for every class.

    Raises:
        UnknownNameError: a custom convention whose name is no tolerance preset.
    """
    conv = get_convention(convention)
    preset = get_tolerances(conv.name)
    general = GENERAL_TOLERANCE_MM.get(conv.name)
    if not isinstance(preset, ToleranceTable) or preset.default is not None or general is None:
        return preset  # type: ignore[return-value]
    return ToleranceTable(f"{preset.name}, {general:g} mm for other classes", {c: preset[c] for c in preset}, default=general)


def defaulted_classes(tolerances: Mapping[str, float] | None, classes: Sequence[str]) -> list[str]:
    """The classes a per-class table does not list and scores at its default tolerance.

    Args:
        tolerances: the tolerances used (None: NSD not computed).
        classes: the classes scored.

    Returns:
        Those classes, in order; empty for a uniform tolerance (a number, Touchstone's 1.5 mm)
        where no class is listed by name.
    """
    if not isinstance(tolerances, ToleranceTable) or len(tolerances) == 0:
        return []
    return tolerances.defaulted(classes)


def tolerance_notes(tolerances: Mapping[str, float] | None, classes: Sequence[str]) -> list[str]:
    """Report lines naming the classes that take a table's default tolerance (none if no class does)."""
    defaulted = defaulted_classes(tolerances, classes)
    if not defaulted:
        return []
    general = tolerances.default  # type: ignore[union-attr]
    return [f"NSD tolerance: {', '.join(defaulted)} not in the preset table, scored at the convention's general tolerance of {general:g} mm"]
