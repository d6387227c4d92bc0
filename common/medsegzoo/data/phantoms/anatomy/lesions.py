"""Lesions of the abdominal phantom: which organs host each lesion class
(:data:`LESION_HOSTS`), which classes count as tumours, how a case's lesions are drawn and
placed (:func:`draw_lesions`) and the structures that paint them inside their hosts
(:func:`lesion_structures`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medsegzoo.data.phantoms.anatomy.shapes import Ellipsoid, Structure


# Lesion class -> organs that can host it (structure names); the phantom records the host.
LESION_HOSTS: dict[str, tuple[str, ...]] = {
    "liver_tumor": ("liver",),
    "hepatic_vessel_tumor": ("liver",),
    "kidney_tumor": ("kidney_left", "kidney_right"),
    "kidney_cyst": ("kidney_left", "kidney_right"),
    "pancreas_tumor": ("pancreas",),
    "lung_tumor": ("lung_lower_lobe_left", "lung_lower_lobe_right", "lung_upper_lobe_right"),
    "colon_tumor": ("colon",),
}
MIN_LESION_RADIUS = 0.07
# Lesion classes that count as tumours for ``has_tumor`` (cysts are benign).
TUMOR_CLASSES: frozenset[str] = frozenset(k for k in LESION_HOSTS if k != "kidney_cyst")


@dataclass(frozen=True)
class Lesion:
    """One lesion of a phantom case (recorded in the case metadata).

    Attributes:
        kind: lesion class (``kidney_tumor``, ``kidney_cyst`` is stored as its sided class).
        host: the organ it lies in.
        center: body coordinates of its centre.
        radius: its radius in body units.
    """

    kind: str
    host: str
    center: tuple[float, float, float]
    radius: float

    @property
    def tissue(self) -> str:
        """Tissue (and label class) painted for it: cysts carry their side."""
        if self.kind == "kidney_cyst":
            return "kidney_cyst_left" if self.host.endswith("_left") else "kidney_cyst_right"
        return self.kind


def draw_lesions(
    rng: np.random.Generator,
    structures: Sequence[Structure],
    kinds: Sequence[str],
    tumor_probability: float,
    cyst_probability: float = 0.3,
) -> tuple[list[Lesion], bool]:
    """Decide the lesions of one case and place them inside their host organs.

    With probability ``tumor_probability`` the case has tumours: each tumour kind of ``kinds``
    is present with probability 0.6 (at least one). ``kidney_cyst`` (benign, not a tumour) is
    drawn independently with ``cyst_probability``. A lesion's centre is drawn well inside its
    host's shape; its voxels are later restricted to the host (so it never leaves the organ).

    Returns:
        ``(lesions, has_tumor)``.
    """
    by_tissue = {st.tissue: st for st in structures}
    tumor_kinds = [k for k in kinds if k in TUMOR_CLASSES]
    chosen: list[str] = []
    has_tumor = bool(tumor_kinds) and rng.uniform() < tumor_probability
    if has_tumor:
        chosen = [k for k in tumor_kinds if rng.uniform() < 0.6] or [
            tumor_kinds[int(rng.integers(len(tumor_kinds)))]
        ]
    if "kidney_cyst" in kinds and rng.uniform() < cyst_probability:
        chosen.append("kidney_cyst")
    lesions = []
    for kind in chosen:
        hosts = [h for h in LESION_HOSTS[kind] if h in by_tissue]
        if not hosts:
            continue
        host = hosts[int(rng.integers(len(hosts)))]
        shape = by_tissue[host].shapes[0]
        center = shape.sample_point(rng)
        # a floor keeps lesions visible on small grids (a 32^3 phantom: 16 voxels per unit)
        radius = float(max(shape.size() * rng.uniform(0.35, 0.65), MIN_LESION_RADIUS))
        lesions.append(Lesion(kind, host, tuple(float(v) for v in center), radius))
    return lesions, has_tumor and any(les.kind in TUMOR_CLASSES for les in lesions)


def lesion_structures(lesions: Sequence[Lesion], rng: np.random.Generator) -> list[Structure]:
    """Structures of the lesions, each confined to its host organ (and earlier lesions' host)."""
    out = []
    for lesion in lesions:
        radii = np.full(3, lesion.radius) * rng.uniform(0.8, 1.2, size=3)
        out.append(
            Structure(
                lesion.tissue,
                [Ellipsoid(lesion.center, radii, angle=rng.uniform(0, np.pi))],
                within=(lesion.host,),
            )
        )
    return out
