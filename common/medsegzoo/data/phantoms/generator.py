"""One synthetic case: anatomy (:mod:`.anatomy`) seen through a site (:mod:`.sites`).

:func:`make_phantom` returns a :class:`Phantom` in RAS orientation: the image (CT in HU or
MR in arbitrary units), a label map over the phantom's own canonical classes, the affine and
the case metadata. :meth:`Phantom.label_map` converts the labels to any data set's native
values or any method's label system with the taxonomy's rules, so a layout writer never
holds a label table of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsegzoo.data.phantoms.anatomy import (
    ABDOMEN_CLASSES,
    BRAIN_CLASSES,
    BRAIN_MR,
    BRAIN_SEQUENCES,
    LA_CLASSES,
    LA_MR,
    LESION_HOSTS,
    STRUCTURE_HOSTS,
    TISSUES,
    BodyFrame,
    abdomen_structures,
    brain_structures,
    draw_lesions,
    left_atrium_structures,
    lesion_structures,
    paint,
)
from medsegzoo.data.phantoms.sites import PHASES, Site, acquire, get_site, site_grid
from medsegzoo.errors import MedSegZooError, UnknownNameError
from medsegzoo.taxonomy import get_label_system, resolve_class, side_parts

__all__ = ["ANATOMIES", "DEFAULT_LESIONS", "Phantom", "make_phantom"]

ANATOMIES: tuple[str, ...] = ("abdomen", "left_atrium", "brain")
DEFAULT_LESIONS: tuple[str, ...] = ("liver_tumor", "kidney_tumor", "pancreas_tumor", "kidney_cyst")
_AGE_RANGE = (22, 86)


@dataclass
class Phantom:
    """One synthetic case in RAS orientation (axis 0 toward the patient's right).

    Attributes:
        image: float32 image (CT: HU; MR: arbitrary units); for the brain the FLAIR image.
        label: integer label map; value ``i + 1`` is ``classes[i]``, 0 background.
        classes: canonical class names of the label values.
        affine: voxel-to-world RAS+ affine.
        metadata: case metadata (site, modality, manufacturer, age, sex, has_tumor, lesions...).
        extra_images: other sequences of the same case (brain: ``t1``, ``t1ce``, ``t2``).
        hosts: class -> the organ it lies in (lesions), used to tell their side.
    """

    image: np.ndarray
    label: np.ndarray
    classes: tuple[str, ...]
    affine: np.ndarray
    metadata: dict[str, Any]
    extra_images: dict[str, np.ndarray] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of one of :attr:`classes` (exact class, no merging).

        Raises:
            UnknownNameError: the phantom has no such class.
        """
        if name not in self.classes:
            raise UnknownNameError(
                f"phantom has no class {name!r}; its classes: {', '.join(self.classes)}"
            )
        return self.label == self.classes.index(name) + 1

    def present_classes(self) -> list[str]:
        """Classes with at least one voxel, in class order."""
        values = np.unique(self.label)
        return [self.classes[v - 1] for v in values if v > 0]

    def label_map(self, target: str) -> np.ndarray:
        """The label map in a data set's native values or a label system's values.

        Each phantom class becomes what the taxonomy's rules make of it in ``target``
        (:func:`medsegzoo.taxonomy.resolve_class`): kept, merged into a parent (lung lobes into
        a lung, a tumour into its organ when the target does not label tumours), or dropped.
        A class the rules drop falls back to the organ it lies in (intrahepatic vessels ->
        liver, vertebrae -> bone, a lesion -> its host organ). Where the result is a merged
        organ split into left/right, the side is the phantom's own (exact, no components).

        Args:
            target: data set name ("btcv", "kits19", ...) or label system ("universal32").

        Returns:
            Label map of the target's values (uint8, or uint16 above 255).
        """

        system = get_label_system(target)
        lut = np.zeros(len(self.classes) + 1, dtype=np.uint16)
        for i, name in enumerate(self.classes):
            lut[i + 1] = _target_value(name, system, frozenset(self.classes), self.hosts)
        dtype = np.uint8 if lut.max() < 256 else np.uint16
        return np.take(lut.astype(dtype), self.label)


def _side(name: str, hosts: dict[str, str]) -> str | None:
    seen = set()
    while name and name not in seen:
        seen.add(name)
        if name.endswith("_left"):
            return "left"
        if name.endswith("_right"):
            return "right"
        name = hosts.get(name, "")
    return None


def _target_value(name: str, system: Any, source: frozenset[str], hosts: dict[str, str]) -> int:
    """Value of phantom class ``name`` in ``system`` (0 = background)."""

    targets = frozenset(system.classes)
    current: str | None = name
    seen: set[str] = set()
    while current and current not in seen:
        seen.add(current)
        resolution = resolve_class(current, targets, source)
        if resolution is not None:
            kind, cls = resolution
            if kind == "direct":
                return int(system.index_of(cls))
            left, right = side_parts(cls)  # type: ignore[misc]
            side = _side(name, hosts)
            part = left if side == "left" else right if side == "right" else None
            return int(system.index_of(part)) if part in targets else 0
        current = hosts.get(current) or STRUCTURE_HOSTS.get(current)
    return 0


def _seed_sequence(seed: int | Sequence[int]) -> list[int]:
    seeds = [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]  # type: ignore[arg-type]
    if any(s < 0 for s in seeds):
        raise MedSegZooError(f"seed must be non-negative, got {seed}")
    return seeds


def make_phantom(
    size: int = 64,
    seed: int | Sequence[int] = 0,
    site: int | Site = 0,
    modality: str = "CT",
    tumors: bool = True,
    *,
    anatomy: str = "abdomen",
    tumor_probability: float = 0.7,
    lesion_kinds: Sequence[str] | None = None,
    crop: bool = True,
    variation: float = 1.0,
) -> Phantom:
    """Generate one synthetic case.

    The seed fixes the patient (anatomy, deformation, lesions, age, sex); the site fixes the
    acquisition (grid, field of view, contrast phase, blur, noise, calibration). The same seed
    on two sites is the same patient scanned twice. Same arguments, same bytes.

    Args:
        size: field of view in nominal 1 mm voxels per axis (the array is ``size^3`` at site 0).
        seed: integer (or sequence of integers) identifying the patient.
        site: site index or :class:`~medsegzoo.data.phantoms.sites.Site`.
        modality: "CT" (Hounsfield units) or "MR" (arbitrary units, bias field, Rician noise);
            the left atrium and brain anatomies are always MR.
        tumors: draw lesions at all.
        anatomy: "abdomen", "left_atrium" or "brain".
        tumor_probability: probability that a case has tumours (``has_tumor`` in the metadata).
        lesion_kinds: lesion classes to draw from (default :data:`DEFAULT_LESIONS`).
        crop: apply the site's field-of-view crop.
        variation: how much patients differ (left atrium only; 1 is the default population,
            larger values spread the heart's anatomy, the body's deformation and the per-case
            tissue intensities, see :func:`~.anatomy.left_atrium_structures`). A harder
            population for semi-supervised learning: a few labeled patients no longer cover it.

    Returns:
        The :class:`Phantom`.

    Raises:
        MedSegZooError: bad size, seed, site, modality, probability or variation.
        UnknownNameError: unknown anatomy or lesion kind.
    """

    if anatomy not in ANATOMIES:
        raise UnknownNameError(
            f"unknown phantom anatomy {anatomy!r}; known: {', '.join(ANATOMIES)}"
        )
    modality = str(modality).upper()
    if modality not in ("CT", "MR"):
        raise MedSegZooError(f"modality must be CT or MR, got {modality!r}")
    if anatomy != "abdomen":
        modality = "MR"
    if not 0.0 <= tumor_probability <= 1.0:
        raise MedSegZooError(f"tumor_probability must be in [0, 1], got {tumor_probability}")
    variation = float(variation)
    if variation != 1.0 and anatomy != "left_atrium":
        raise MedSegZooError(f"variation is implemented for the left atrium anatomy only, got {variation} for {anatomy!r}")
    if not 0.0 <= variation <= 10.0:
        raise MedSegZooError(f"variation must be in [0, 10], got {variation}")
    kinds = tuple(DEFAULT_LESIONS if lesion_kinds is None else lesion_kinds)
    unknown = [k for k in kinds if k not in LESION_HOSTS]
    if unknown:
        raise UnknownNameError(f"unknown lesion kinds {unknown}; known: {', '.join(LESION_HOSTS)}")
    seeds = _seed_sequence(seed)
    site_obj = site if isinstance(site, Site) else get_site(site)
    # separate streams: the patient is the same on every site, and with or without lesions
    anatomy_rng = np.random.default_rng([*seeds, 1])
    lesion_rng = np.random.default_rng([*seeds, 3])
    acquisition_rng = np.random.default_rng([*seeds, 2, site_obj.index])

    sex = "M" if anatomy_rng.uniform() < 0.5 else "F"
    age = int(anatomy_rng.integers(*_AGE_RANGE))
    metadata: dict[str, Any] = {
        "anatomy": anatomy,
        "modality": modality,
        "site": site_obj.name,
        "site_index": site_obj.index,
        "manufacturer": site_obj.manufacturer,
        "scanner": site_obj.model,
        "age": age,
        "sex": sex,
        "seed": seeds,
    }
    lesions = []
    has_tumor = False
    if anatomy == "abdomen":
        structures = abdomen_structures(anatomy_rng, sex)
        if tumors:
            lesions, has_tumor = draw_lesions(lesion_rng, structures, kinds, tumor_probability)
        structures += lesion_structures(lesions, lesion_rng)
        classes = ABDOMEN_CLASSES
        metadata["contrast_phase"] = site_obj.phase if modality == "CT" else None
    elif anatomy == "left_atrium":
        structures = left_atrium_structures(anatomy_rng, variation)
        classes = LA_CLASSES
    else:
        grade = "HGG" if anatomy_rng.uniform() < 0.75 else "LGG"
        structures = brain_structures(anatomy_rng, grade)
        classes = BRAIN_CLASSES
        metadata["grade"] = grade
        has_tumor = True
    metadata["has_tumor"] = bool(has_tumor)
    metadata["lesions"] = [
        {"class": les.tissue, "host": les.host, "center": list(les.center), "radius": les.radius}
        for les in lesions
    ]
    frame = BodyFrame.random(anatomy_rng) if variation == 1.0 else BodyFrame.random(anatomy_rng, 0.035 * variation)
    grid = site_grid(size, site_obj, crop=crop)
    coords = frame.body_coordinates(*grid.axes)

    background = "air" if anatomy != "brain" else "background"
    names = [background] + sorted({st.tissue for st in structures} - {background})
    codes = {name: i for i, name in enumerate(names)}
    tissue_map = np.zeros(grid.shape, dtype=np.uint8)
    paint(tissue_map, codes, structures, coords, frame, grid.axes)

    label_lut = np.zeros(len(names), dtype=np.uint8)
    for name, code in codes.items():
        cls = _tissue_label(name, anatomy)
        if cls is not None:
            label_lut[code] = classes.index(cls) + 1
    label = np.take(label_lut, tissue_map)

    extra: dict[str, np.ndarray] = {}
    if anatomy == "brain":
        images = {}
        for k, sequence in enumerate(BRAIN_SEQUENCES):
            jitter = anatomy_rng.uniform(0.95, 1.05, size=len(names))
            lut = np.array([BRAIN_MR[n][k] for n in names], np.float32) * jitter.astype(np.float32)
            images[sequence] = acquire(
                np.take(lut, tissue_map), site_obj, grid, "MR", acquisition_rng
            )
        image = images.pop("flair")
        extra = images
    else:
        lut = _intensity_lut(names, anatomy, modality, site_obj, anatomy_rng, variation)
        image = acquire(np.take(lut, tissue_map), site_obj, grid, modality, acquisition_rng)
    metadata["spacing"] = list(grid.spacing)
    metadata["shape"] = list(grid.shape)
    hosts = {les.tissue: les.host for les in lesions}
    return Phantom(image, label, tuple(classes), grid.affine, metadata, extra, hosts)


def _tissue_label(name: str, anatomy: str) -> str | None:
    if anatomy == "abdomen":
        return TISSUES[name].label
    if anatomy == "left_atrium":
        return name if name in LA_CLASSES else None
    return name if name in BRAIN_CLASSES else None


def _intensity_lut(
    names: list[str], anatomy: str, modality: str, site: Site, rng: np.random.Generator, variation: float = 1.0
) -> np.ndarray:
    """Ideal intensity per tissue code, with a small per-case jitter per tissue."""
    if anatomy == "left_atrium":
        values = np.array([LA_MR[n] for n in names], np.float32)
        # +-7 % per tissue at variation 1 (literal bounds keep the default population's bytes)
        low, high = (0.93, 1.07) if variation == 1.0 else (max(1 - 0.07 * variation, 0.3), 1 + 0.07 * variation)
        return values * rng.uniform(low, high, size=len(names)).astype(np.float32)
    if modality == "CT":
        phase = PHASES.index(site.phase)
        values = np.array([TISSUES[n].hu[phase] for n in names], np.float32)
        jitter = rng.normal(0.0, 4.0, size=len(names)).astype(np.float32)
        jitter[[i for i, n in enumerate(names) if TISSUES[n].hu[phase] <= -700]] = (
            0.0  # air/lung stay put
        )
        return values + jitter
    values = np.array([TISSUES[n].mr for n in names], np.float32)
    return values * rng.uniform(0.93, 1.07, size=len(names)).astype(np.float32)
