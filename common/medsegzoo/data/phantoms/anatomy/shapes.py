"""Shapes in body coordinates and how they are painted: the solids (:class:`Ellipsoid`,
:class:`Tube`, :class:`ZCylinder`, :class:`Clipped`), a tissue drawn as their union
(:class:`Structure`), the per-case random deformation (:class:`BodyFrame`), :func:`paint`
(structures in priority order into a tissue map) and :func:`jitter` (a randomly perturbed
centre and radii, shared by every anatomy).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


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
        tissue: key of :data:`.tissues.TISSUES` (or of the LA/brain tables for those anatomies).
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


def jitter(
    rng: np.random.Generator,
    center: Sequence[float],
    radii: Sequence[float],
    shift: float = 0.02,
    spread: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """A randomly placed and sized copy of a nominal ``(center, radii)``.

    Args:
        rng: the case's anatomy random generator.
        center: nominal centre (body coordinates).
        radii: nominal radii.
        shift: standard deviation of the normal shift of the centre per axis.
        spread: radii are scaled by a uniform factor in ``[1 - spread, 1 + spread]`` per axis.

    Returns:
        ``(center, radii)`` as float arrays.
    """
    c = np.asarray(center, float) + rng.normal(0.0, shift, size=3)
    r = np.asarray(radii, float) * rng.uniform(1 - spread, 1 + spread, size=3)
    return c, r
