"""Organ geometry of the synthetic phantoms: shapes, tissue properties, random deformation.

Coordinates
-----------
Everything here lives in **RAS+ voxel order**, the convention of nibabel and NIfTI: world
``+x`` points to the patient's **Right**, ``+y`` to the **Anterior**, ``+z`` to the
**Superior** (nibabel, "Coordinate systems and affines": RAS+ means x increases from the
subject's left to the subject's right). In an array oriented RAS (``nibabel.aff2axcodes`` gives
``('R', 'A', 'S')``) axis-0 indices therefore *increase toward the patient's right*: the left
kidney, the spleen and the stomach lie at **smaller** axis-0 indices, the liver and the
gallbladder at larger ones. This agrees with REFERENCE.md section 2 ("the component with the
smaller mean index on axis 0 after RAS orientation is the left one") and with
:func:`medsegzoo.taxonomy.split_left_right`.

Shapes are defined in *body coordinates*: the field of view spans ``[-1, 1]`` on each axis
(``0`` = centre), ``x`` toward the patient's right, ``y`` anterior, ``z`` superior. A voxel at
normalised position ``u`` is tested at ``v = (u + d(u)) / s`` where ``d`` is a smooth random
displacement (a sum of a few low-frequency sine waves, defined in space, not on the grid) and
``s`` the patient's size; both are drawn per case, so one seed gives the same patient on
every site's grid (spacing, field of view) - only the acquisition differs.

Each :class:`Structure` is painted in order; a later structure overwrites an earlier one, so
the order is the priority that keeps labels free of overlaps (vessels and small organs last,
lesions very last and only inside their host organ).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ABDOMEN_CLASSES",
    "BRAIN_CLASSES",
    "LA_CLASSES",
    "LESION_HOSTS",
    "TISSUES",
    "BodyFrame",
    "Ellipsoid",
    "Lesion",
    "Shape",
    "Structure",
    "Tissue",
    "Tube",
    "ZCylinder",
    "abdomen_structures",
    "brain_structures",
    "draw_lesions",
    "left_atrium_structures",
    "paint",
]


# ---------------------------------------------------------------------------------------------
# Tissue properties
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Shapes (body coordinates)
# ---------------------------------------------------------------------------------------------


class Shape(ABC):
    """A solid in body coordinates that can test points and draw interior points."""

    @abstractmethod
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box ``(low, high)`` in body coordinates."""

    @abstractmethod
    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Boolean array: which points ``(x, y, z)`` (broadcastable arrays) are inside."""

    @abstractmethod
    def sample_point(self, rng: np.random.Generator) -> np.ndarray:
        """A random point well inside the shape (for placing lesions)."""

    @abstractmethod
    def size(self) -> float:
        """A typical radius (used to size lesions)."""


@dataclass
class Ellipsoid(Shape):
    """Ellipsoid with semi-axes ``radii``, rotated by ``angle`` radians about the z axis."""

    center: np.ndarray
    radii: np.ndarray
    angle: float = 0.0

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, float)
        self.radii = np.asarray(self.radii, float)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        c, s = abs(np.cos(self.angle)), abs(np.sin(self.angle))
        rx, ry, rz = self.radii
        half = np.array([np.hypot(rx * c, ry * s), np.hypot(rx * s, ry * c), rz])
        return self.center - half, self.center + half

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        dx, dy, dz = x - self.center[0], y - self.center[1], z - self.center[2]
        if self.angle:
            c, s = np.cos(self.angle), np.sin(self.angle)
            dx, dy = c * dx + s * dy, -s * dx + c * dy
        rx, ry, rz = self.radii
        return (dx / rx) ** 2 + (dy / ry) ** 2 + (dz / rz) ** 2 <= 1.0

    def sample_point(self, rng: np.random.Generator) -> np.ndarray:
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) or 1.0
        local = direction * self.radii * 0.55 * rng.uniform(0.0, 1.0) ** (1 / 3)
        c, s = np.cos(self.angle), np.sin(self.angle)
        rotated = np.array([c * local[0] - s * local[1], s * local[0] + c * local[1], local[2]])
        return self.center + rotated

    def size(self) -> float:
        return float(np.cbrt(np.prod(self.radii)))


@dataclass
class Tube(Shape):
    """A tube along a polyline, radius interpolated linearly between its points."""

    points: np.ndarray
    radii: np.ndarray

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, float)
        self.radii = np.broadcast_to(np.asarray(self.radii, float), (len(self.points),)).copy()

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.radii[:, None]
        return (self.points - r).min(axis=0), (self.points + r).max(axis=0)

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), dtype=bool)
        for a, b, ra, rb in zip(
            self.points[:-1], self.points[1:], self.radii[:-1], self.radii[1:], strict=True
        ):
            ab = b - a
            length2 = float(ab @ ab) or 1e-12
            px, py, pz = x - a[0], y - a[1], z - a[2]
            t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / length2, 0.0, 1.0)
            dist2 = (px - t * ab[0]) ** 2 + (py - t * ab[1]) ** 2 + (pz - t * ab[2]) ** 2
            out |= dist2 <= (ra + t * (rb - ra)) ** 2
        return out

    def sample_point(self, rng: np.random.Generator) -> np.ndarray:
        segment = int(rng.integers(len(self.points) - 1))
        t = rng.uniform(0.1, 0.9)
        a, b = self.points[segment], self.points[segment + 1]
        return a + t * (b - a)

    def size(self) -> float:
        return float(self.radii.mean())


@dataclass
class ZCylinder(Shape):
    """Elliptic cylinder along z with flat ends (vertebral bodies, the body outline)."""

    center_xy: np.ndarray
    radii_xy: np.ndarray
    z_range: tuple[float, float]

    def __post_init__(self) -> None:
        self.center_xy = np.asarray(self.center_xy, float)
        self.radii_xy = np.asarray(self.radii_xy, float)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([*(self.center_xy - self.radii_xy), self.z_range[0]])
        hi = np.array([*(self.center_xy + self.radii_xy), self.z_range[1]])
        return lo, hi

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        (cx, cy), (rx, ry) = self.center_xy, self.radii_xy
        in_plane = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0
        return in_plane & (z >= self.z_range[0]) & (z < self.z_range[1])

    def sample_point(self, rng: np.random.Generator) -> np.ndarray:
        z = rng.uniform(*self.z_range)
        return np.array([*self.center_xy, z])

    def size(self) -> float:
        return float(self.radii_xy.mean())


@dataclass
class Clipped(Shape):
    """A shape cut by half-spaces ``normal . v <= offset`` (lung lobes)."""

    shape: Shape
    planes: tuple[tuple[tuple[float, float, float], float], ...]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.shape.bounds()

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = self.shape.inside(x, y, z)
        for (nx, ny, nz), offset in self.planes:
            out &= nx * x + ny * y + nz * z <= offset
        return out

    def sample_point(self, rng: np.random.Generator) -> np.ndarray:
        point = self.shape.sample_point(rng)
        for _ in range(50):
            if all(np.dot(n, point) <= o for n, o in self.planes):
                return point
            point = self.shape.sample_point(rng)
        return point

    def size(self) -> float:
        return self.shape.size() * 0.6


@dataclass
class Structure:
    """One tissue drawn as the union of shapes.

    Attributes:
        tissue: key of :data:`TISSUES` (or of the LA/brain tables for those anatomies).
        shapes: its solids.
        within: tissue names it may only replace (e.g. stomach air only inside the stomach,
            lesions only inside their host); None = anywhere.
        holes: solids carved out of the structure (the renal hilum).
    """

    tissue: str
    shapes: list[Shape]
    within: tuple[str, ...] | None = None
    holes: list[Shape] = field(default_factory=list)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        boxes = [s.bounds() for s in self.shapes]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


# ---------------------------------------------------------------------------------------------
# Random deformation and the body frame
# ---------------------------------------------------------------------------------------------


@dataclass
class BodyFrame:
    """Maps normalised grid positions to body coordinates: ``v = (u + d(u)) / scale``.

    The displacement ``d`` is a sum of ``len(frequencies)`` sine waves per component: smooth,
    resolution independent (a function of position, not of the voxel grid) and cheap to
    evaluate on any grid.

    Attributes:
        scale: patient size per axis (1 = nominal).
        frequencies: wave vectors (cycles per unit), shape (K, 3).
        phases: shape (K, 3), one phase per wave and component.
        amplitudes: shape (K, 3), displacement amplitude per wave and component.
    """

    scale: np.ndarray
    frequencies: np.ndarray
    phases: np.ndarray
    amplitudes: np.ndarray

    @classmethod
    def random(
        cls, rng: np.random.Generator, amplitude: float = 0.035, waves: int = 3
    ) -> BodyFrame:
        """A random patient: size jitter and a low-frequency deformation of ``amplitude``."""
        scale = np.array(
            [rng.uniform(0.92, 1.05), rng.uniform(0.92, 1.05), rng.uniform(0.96, 1.04)]
        )
        directions = rng.normal(size=(waves, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        frequencies = directions * rng.uniform(0.25, 0.7, size=(waves, 1))
        phases = rng.uniform(0.0, 2 * np.pi, size=(waves, 3))
        amplitudes = rng.uniform(0.4, 1.0, size=(waves, 3)) * amplitude / np.sqrt(waves)
        return cls(scale, frequencies, phases, amplitudes)

    @property
    def max_displacement(self) -> float:
        """Upper bound of ``|d|`` per component."""
        return float(np.abs(self.amplitudes).sum(axis=0).max())

    def body_coordinates(
        self, ux: np.ndarray, uy: np.ndarray, uz: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Body coordinates of the grid ``ux x uy x uz`` (1D axes), each a full 3D float32 array."""
        gx = ux.astype(np.float32)[:, None, None]
        gy = uy.astype(np.float32)[None, :, None]
        gz = uz.astype(np.float32)[None, None, :]
        shape = (len(ux), len(uy), len(uz))
        coords = [np.broadcast_to(g, shape).astype(np.float32) for g in (gx, gy, gz)]
        two_pi = np.float32(2 * np.pi)
        for freq, phase, amp in zip(self.frequencies, self.phases, self.amplitudes, strict=True):
            argument = two_pi * (
                np.float32(freq[0]) * gx + np.float32(freq[1]) * gy + np.float32(freq[2]) * gz
            )
            for c in range(3):
                coords[c] += np.float32(amp[c]) * np.sin(argument + np.float32(phase[c]))
        for c in range(3):
            coords[c] /= np.float32(self.scale[c])
        return coords[0], coords[1], coords[2]

    def voxel_box(
        self, low: np.ndarray, high: np.ndarray, axes: Sequence[np.ndarray]
    ) -> tuple[slice, ...] | None:
        """Index ranges of the grid that can map into the body-coordinate box ``[low, high]``."""
        margin = self.max_displacement + 1e-3
        out = []
        for a, axis in enumerate(axes):
            lo = low[a] * self.scale[a] - margin
            hi = high[a] * self.scale[a] + margin
            start = int(np.searchsorted(axis, lo, side="left"))
            stop = int(np.searchsorted(axis, hi, side="right"))
            if stop <= start:
                return None
            out.append(slice(start, stop))
        return tuple(out)


def paint(
    tissue_map: np.ndarray,
    codes: dict[str, int],
    structures: Sequence[Structure],
    coords: tuple[np.ndarray, np.ndarray, np.ndarray],
    frame: BodyFrame,
    axes: Sequence[np.ndarray],
) -> None:
    """Draw ``structures`` in order into ``tissue_map`` (in place), each inside its bounding box.

    Args:
        tissue_map: integer array of tissue codes (grid shape).
        codes: tissue name -> code.
        structures: what to draw, lowest priority first.
        coords: body coordinates of every voxel (:meth:`BodyFrame.body_coordinates`).
        frame: the case's body frame (for bounding boxes).
        axes: normalised 1D grid axes.
    """
    for structure in structures:
        box = frame.voxel_box(*structure.bounds(), axes)
        if box is None:
            continue
        x, y, z = (c[box] for c in coords)
        mask = np.zeros(x.shape, dtype=bool)
        for shape in structure.shapes:
            mask |= shape.inside(x, y, z)
        for hole in structure.holes:
            mask &= ~hole.inside(x, y, z)
        region = tissue_map[box]
        if structure.within is not None:
            allowed = np.isin(region, [codes[w] for w in structure.within])
            mask &= allowed
        region[mask] = codes[structure.tissue]


# ---------------------------------------------------------------------------------------------
# Abdomen
# ---------------------------------------------------------------------------------------------


def _jitter(
    rng: np.random.Generator,
    center: Sequence[float],
    radii: Sequence[float],
    shift: float = 0.02,
    spread: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(center, float) + rng.normal(0.0, shift, size=3)
    r = np.asarray(radii, float) * rng.uniform(1 - spread, 1 + spread, size=3)
    return c, r


def _tube(
    rng: np.random.Generator,
    points: Sequence[Sequence[float]],
    radius: float | Sequence[float],
    shift: float = 0.015,
) -> Tube:
    pts = np.asarray(points, float) + rng.normal(0.0, shift, size=(len(points), 3))
    radii = np.asarray(radius, float) * rng.uniform(0.9, 1.1)
    return Tube(pts, radii)


def abdomen_structures(rng: np.random.Generator, sex: str) -> list[Structure]:
    """The abdominal phantom's structures for one patient, lowest priority first.

    Positions in body coordinates (x toward the patient's right, y anterior, z superior; the
    field of view spans [-1, 1]): liver right-upper, spleen left-upper and posterior, kidneys
    posterior on each side of the spine, aorta anterior-left of the spine, postcava to its
    right, pancreas across the middle from the duodenal C-loop (right) to the splenic hilum
    (left), lungs at the top, bladder and femur heads at the bottom.

    Args:
        rng: the case's anatomy random generator.
        sex: "M" or "F" (prostate or uterus).

    Returns:
        Structures in painting order.
    """
    s: list[Structure] = []
    # body wall: subcutaneous fat ring, muscle ring, visceral fat cavity
    s.append(Structure("subcutaneous_fat", [ZCylinder((0, 0), (0.86, 0.64), (-9, 9))]))
    s.append(Structure("muscle", [ZCylinder((0, -0.01), (0.79, 0.57), (-9, 9))]))
    s.append(Structure("visceral_fat", [ZCylinder((0, 0), (0.74, 0.52), (-9, 9))]))
    # paraspinal muscles and psoas
    for side in (-1, 1):
        s.append(Structure("muscle", [ZCylinder((0.17 * side, -0.47), (0.13, 0.08), (-9, 9))]))
        c, r = _jitter(rng, (0.16 * side, -0.28, -0.35), (0.07, 0.07, 0.5))
        s.append(Structure("muscle", [Ellipsoid(c, r)]))
    # lungs (lobes split by an oblique fissure; the right upper lobe also by a horizontal one)
    for side, name in ((1, "right"), (-1, "left")):
        c, r = _jitter(rng, (0.4 * side, -0.02, 0.92), (0.3, 0.42, 0.4), spread=0.06)
        lung = Ellipsoid(c, r)
        fissure = (
            (0.0, 0.55, 1.0),
            float(c[2] + 0.55 * c[1] - 0.02),
        )  # lower lobe: posterior-inferior
        lower = Clipped(lung, (fissure,))
        upper = Clipped(lung, (((0.0, -0.55, -1.0), -fissure[1]),))
        if side == 1:
            horizontal = float(c[2] - 0.1)
            middle = Clipped(
                lung, (((0.0, -0.55, -1.0), -fissure[1]), ((0.0, 0.0, 1.0), horizontal))
            )
            upper = Clipped(
                lung, (((0.0, -0.55, -1.0), -fissure[1]), ((0.0, 0.0, -1.0), -horizontal))
            )
            s.append(Structure("lung_middle_lobe_right", [middle]))
        s.append(Structure(f"lung_upper_lobe_{name}", [upper]))
        s.append(Structure(f"lung_lower_lobe_{name}", [lower]))
    # spine: vertebral bodies with discs between them
    cx, cy = rng.normal(0, 0.01), -0.33 + rng.normal(0, 0.01)
    radius = 0.095 * rng.uniform(0.92, 1.08)
    s.append(Structure("disc", [ZCylinder((cx, cy), (radius, radius * 0.85), (-9, 9))]))
    edges = np.linspace(-1.0, 1.0, len(VERTEBRAE) + 1) + rng.normal(0, 0.015)
    edges[0], edges[-1] = -9.0, 9.0
    for i, name in enumerate(VERTEBRAE):
        gap = 0.025
        s.append(
            Structure(
                name,
                [
                    ZCylinder(
                        (cx, cy), (radius, radius * 0.85), (edges[i] + gap, edges[i + 1] - gap)
                    )
                ],
            )
        )
    # pelvis and lower abdomen
    for side, name in ((-1, "femur_head_left"), (1, "femur_head_right")):
        c, r = _jitter(rng, (0.42 * side, -0.02, -0.92), (0.1, 0.1, 0.1), spread=0.05)
        s.append(Structure(name, [Ellipsoid(c, r)]))
    c, r = _jitter(rng, (0.05, 0.18, -0.32), (0.36, 0.24, 0.3))
    s.append(Structure("intestine", [Ellipsoid(c, r)]))
    colon = _tube(
        rng,
        [
            (0.45, 0.08, -0.55),
            (0.5, 0.02, -0.05),
            (0.44, 0.16, 0.12),
            (0.0, 0.36, 0.05),
            (-0.48, 0.12, 0.28),
            (-0.55, 0.0, -0.2),
            (-0.3, 0.1, -0.62),
            (-0.05, 0.0, -0.7),
        ],
        0.075,
    )
    s.append(Structure("colon", [colon]))
    s.append(
        Structure(
            "colon_air",
            [Ellipsoid(p + (0, 0.04, 0), (0.05, 0.03, 0.05)) for p in colon.points[2:5]],
            within=("colon",),
        )
    )
    s.append(
        Structure(
            "rectum",
            [_tube(rng, [(-0.05, 0.0, -0.7), (0.0, -0.12, -0.84), (0.0, -0.14, -1.1)], 0.07)],
        )
    )
    c, r = _jitter(rng, (0.0, 0.25, -0.84), (0.15, 0.13, 0.12))
    s.append(Structure("bladder", [Ellipsoid(c, r)]))
    if sex == "M":
        c, r = _jitter(rng, (0.0, 0.08, -0.97), (0.07, 0.06, 0.07))
        s.append(Structure("prostate", [Ellipsoid(c, r)]))
    else:
        c, r = _jitter(rng, (0.0, 0.08, -0.7), (0.12, 0.07, 0.09))
        s.append(Structure("prostate_uterus", [Ellipsoid(c, r)]))
    # upper abdomen organs
    c1, r1 = _jitter(rng, (0.38, 0.04, 0.48), (0.34, 0.4, 0.3))
    c2, r2 = _jitter(rng, (0.02, 0.2, 0.58), (0.3, 0.19, 0.15))
    s.append(
        Structure("liver", [Ellipsoid(c1, r1, angle=rng.uniform(-0.2, 0.1)), Ellipsoid(c2, r2)])
    )
    c, r = _jitter(rng, (-0.3, 0.05, 0.6), (0.17, 0.15, 0.15))
    c2, r2 = _jitter(rng, (-0.17, 0.24, 0.42), (0.19, 0.12, 0.14))
    antrum = _tube(rng, [(-0.1, 0.28, 0.34), (0.1, 0.22, 0.3)], 0.07)
    s.append(Structure("stomach", [Ellipsoid(c, r), Ellipsoid(c2, r2, angle=0.4), antrum]))
    # gas rises anteriorly in a supine patient: air fills the anterior top of the fundus/body
    s.append(
        Structure(
            "stomach_air",
            [Ellipsoid(c + (0.0, 0.09, 0.06), r * (0.7, 0.5, 0.5))],
            within=("stomach",),
        )
    )
    c, r = _jitter(rng, (-0.55, -0.18, 0.5), (0.1, 0.2, 0.16))
    s.append(Structure("spleen", [Ellipsoid(c, r, angle=-0.5)]))
    for side, name, z in ((1, "kidney_right", 0.12), (-1, "kidney_left", 0.18)):
        c, r = _jitter(rng, (0.35 * side, -0.3, z), (0.115, 0.12, 0.21), shift=0.015)
        s.append(Structure("perirenal_fat", [Ellipsoid(c, r * 1.4)]))
        hilum = Ellipsoid(c + (-0.11 * side, 0.02, 0.0), (0.05, 0.05, 0.08))
        s.append(Structure(name, [Ellipsoid(c, r, angle=0.3 * side)], holes=[hilum]))
    for side, name, z in ((1, "adrenal_gland_right", 0.4), (-1, "adrenal_gland_left", 0.43)):
        c, r = _jitter(rng, (0.22 * side, -0.24, z), (0.045, 0.07, 0.075), shift=0.01)
        s.append(Structure(name, [Ellipsoid(c, r, angle=0.5 * side)]))
    c, r = _jitter(rng, (0.3, 0.3, 0.22), (0.07, 0.08, 0.12), shift=0.015)
    s.append(Structure("gallbladder", [Ellipsoid(c, r, angle=0.3)]))
    s.append(
        Structure(
            "duodenum",
            [
                _tube(
                    rng,
                    [
                        (0.1, 0.22, 0.3),
                        (0.25, 0.08, 0.27),
                        (0.27, 0.0, 0.1),
                        (0.14, -0.02, 0.02),
                        (-0.06, 0.0, 0.06),
                    ],
                    0.05,
                )
            ],
        )
    )
    s.append(
        Structure(
            "pancreas",
            [
                _tube(
                    rng,
                    [(0.13, 0.02, 0.18), (0.0, 0.05, 0.25), (-0.2, 0.0, 0.3), (-0.42, -0.1, 0.38)],
                    (0.085, 0.06, 0.055, 0.05),
                )
            ],
        )
    )
    s.append(
        Structure(
            "esophagus",
            [
                _tube(
                    rng,
                    [(-0.02, -0.12, 1.1), (-0.06, -0.08, 0.78), (-0.2, 0.0, 0.64)],
                    0.045,
                    shift=0.01,
                )
            ],
        )
    )
    # vessels last among organs
    hilum = np.array([0.2, 0.02, 0.36]) + rng.normal(0, 0.01, 3)
    s.append(
        Structure(
            "hepatic_vessel",
            [
                Tube(np.stack([hilum, hilum + d]), (0.035, 0.02))
                for d in ((0.3, 0.08, 0.2), (0.28, -0.12, -0.02), (-0.1, 0.17, 0.22))
            ],
            within=("liver",),
        )
    )
    s.append(
        Structure(
            "portal_vein_and_splenic_vein",
            [
                Tube(
                    np.stack(
                        [
                            np.array([-0.42, -0.14, 0.42]),
                            np.array([-0.2, -0.06, 0.3]),
                            np.array([0.05, -0.03, 0.28]),
                            hilum,
                        ]
                    ),
                    0.045,
                )
            ],
        )
    )
    aorta_x, aorta_y = -0.08 + rng.normal(0, 0.01), -0.16 + rng.normal(0, 0.01)
    s.append(
        Structure(
            "aorta", [ZCylinder((aorta_x, aorta_y), (0.07, 0.07), (-0.45 + rng.normal(0, 0.03), 9))]
        )
    )
    s.append(
        Structure(
            "postcava",
            [ZCylinder((0.11 + rng.normal(0, 0.01), -0.16), (0.075, 0.06), (-0.45, 0.55))],
        )
    )
    s.append(
        Structure(
            "celiac_trunk",
            [Tube([(aorta_x, aorta_y + 0.05, 0.38), (aorta_x + 0.02, aorta_y + 0.17, 0.4)], 0.04)],
        )
    )
    return s


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


# ---------------------------------------------------------------------------------------------
# Left atrium (cardiac LGE-MRI) and brain (BraTS)
# ---------------------------------------------------------------------------------------------


def left_atrium_structures(rng: np.random.Generator) -> list[Structure]:
    """A thorax with the heart: left atrium with four pulmonary veins (the labeled structure),
    left ventricle, right atrium, aorta, lungs and spine (intensities :data:`LA_MR`)."""
    s: list[Structure] = [
        Structure("chest_wall", [ZCylinder((0, 0), (0.95, 0.8), (-9, 9))]),
        Structure("fat", [ZCylinder((0, 0.02), (0.85, 0.7), (-9, 9))]),
    ]
    for side in (-1, 1):
        c, r = _jitter(rng, (0.45 * side, -0.05, 0.0), (0.35, 0.55, 0.9), spread=0.05)
        s.append(Structure("lung", [Ellipsoid(c, r)]))
    s.append(Structure("spine", [ZCylinder((0, -0.6), (0.12, 0.1), (-9, 9))]))
    c, r = _jitter(rng, (-0.15, 0.3, -0.25), (0.32, 0.28, 0.35))
    s.append(Structure("myocardium", [Ellipsoid(c, r, angle=0.6)]))
    s.append(Structure("blood", [Ellipsoid(c, r * 0.7, angle=0.6)]))
    c, r = _jitter(rng, (0.32, 0.1, 0.05), (0.2, 0.2, 0.22))
    s.append(Structure("blood", [Ellipsoid(c, r)]))
    s.append(Structure("blood", [ZCylinder((-0.12, -0.42), (0.08, 0.08), (-9, 9))]))
    c, r = _jitter(rng, (-0.05, -0.12, 0.1), (0.3, 0.2, 0.22), shift=0.03, spread=0.15)
    veins = []
    for side in (-1, 1):
        for dz in (-0.1, 0.12):
            start = c + (0.18 * side, -0.05, dz)
            end = start + (0.25 * side, -0.12 + rng.normal(0, 0.03), dz * 0.8 + rng.normal(0, 0.03))
            veins.append(Tube(np.stack([start, end]), (0.07, 0.05)))
    s.append(Structure("left_atrium", [Ellipsoid(c, r, angle=rng.uniform(-0.3, 0.3)), *veins]))
    return s


def brain_structures(rng: np.random.Generator, grade: str) -> list[Structure]:
    """A skull-stripped brain with a glioma: oedema around an enhancing rim and a necrotic core
    (LGG cases may lack the enhancing part, as in BraTS).

    Args:
        rng: the case's anatomy random generator.
        grade: "HGG" or "LGG".
    """
    c, r = _jitter(rng, (0.0, 0.0, 0.0), (0.66, 0.82, 0.62), shift=0.01, spread=0.04)
    s = [
        Structure("grey_matter", [Ellipsoid(c, r)]),
        Structure("white_matter", [Ellipsoid(c, r * 0.78)]),
    ]
    for side in (-1, 1):
        s.append(
            Structure(
                "csf",
                [Ellipsoid(c + (0.1 * side, 0.02, 0.08), (0.06, 0.25, 0.1), angle=0.15 * side)],
            )
        )
    side = 1 if rng.uniform() < 0.5 else -1
    center = c + np.array(
        [side * rng.uniform(0.22, 0.35), rng.uniform(-0.35, 0.35), rng.uniform(-0.15, 0.25)]
    )
    core = rng.uniform(0.09, 0.16)
    s.append(
        Structure(
            "peritumoral_edema",
            [
                Ellipsoid(
                    center,
                    np.full(3, core) * rng.uniform(1.9, 2.6, size=3),
                    angle=rng.uniform(0, np.pi),
                )
            ],
            within=("grey_matter", "white_matter", "csf"),
        )
    )
    if grade == "HGG" or rng.uniform() < 0.3:
        s.append(
            Structure(
                "enhancing_tumor",
                [Ellipsoid(center, np.full(3, core) * rng.uniform(0.9, 1.1, size=3))],
                within=("peritumoral_edema",),
            )
        )
        s.append(
            Structure(
                "necrotic_tumor_core",
                [Ellipsoid(center, np.full(3, core * 0.55))],
                within=("enhancing_tumor",),
            )
        )
    else:
        s.append(
            Structure(
                "necrotic_tumor_core",
                [Ellipsoid(center, np.full(3, core * 0.8))],
                within=("peritumoral_edema",),
            )
        )
    return s
