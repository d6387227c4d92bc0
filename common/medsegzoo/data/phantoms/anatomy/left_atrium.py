"""The left atrium phantom (cardiac LGE-MRI-like, 2018 LA challenge): a thorax with the heart
whose left atrium and pulmonary veins are the labeled structure (:func:`left_atrium_structures`,
intensities :data:`~.tissues.LA_MR`).
"""

from __future__ import annotations

import numpy as np

from medsegzoo.data.phantoms.anatomy.shapes import Ellipsoid, Structure, Tube, ZCylinder, jitter


def left_atrium_structures(rng: np.random.Generator, variation: float = 1.0) -> list[Structure]:
    """A thorax with the heart: left atrium with four pulmonary veins (the labeled structure),
    left ventricle, right atrium, aorta, lungs and spine (intensities :data:`LA_MR`).

    Args:
        rng: the case's anatomy random generator.
        variation: scales how much patients differ: the heart's and the atrium's position and
            size jitter, the atrium's tilt and the veins' course (1: the default population;
            the same draws are made at every value, so a patient keeps its identity). The generator
            also scales the body's deformation and the per-case tissue intensity jitter.
    """
    v = float(variation)

    def spread(nominal: float) -> float:
        return min(nominal * v, 0.6)  # radii stay positive

    s: list[Structure] = [
        Structure("chest_wall", [ZCylinder((0, 0), (0.95, 0.8), (-9, 9))]),
        Structure("fat", [ZCylinder((0, 0.02), (0.85, 0.7), (-9, 9))]),
    ]
    for side in (-1, 1):
        c, r = jitter(rng, (0.45 * side, -0.05, 0.0), (0.35, 0.55, 0.9), spread=0.05)
        s.append(Structure("lung", [Ellipsoid(c, r)]))
    s.append(Structure("spine", [ZCylinder((0, -0.6), (0.12, 0.1), (-9, 9))]))
    c, r = jitter(rng, (-0.15, 0.3, -0.25), (0.32, 0.28, 0.35), shift=0.02 * v, spread=spread(0.1))
    s.append(Structure("myocardium", [Ellipsoid(c, r, angle=0.6)]))
    s.append(Structure("blood", [Ellipsoid(c, r * 0.7, angle=0.6)]))
    c, r = jitter(rng, (0.32, 0.1, 0.05), (0.2, 0.2, 0.22), shift=0.02 * v, spread=spread(0.1))
    s.append(Structure("blood", [Ellipsoid(c, r)]))
    s.append(Structure("blood", [ZCylinder((-0.12, -0.42), (0.08, 0.08), (-9, 9))]))
    c, r = jitter(rng, (-0.05, -0.12, 0.1), (0.3, 0.2, 0.22), shift=0.03 * v, spread=spread(0.15))
    veins = []
    for side in (-1, 1):
        for dz in (-0.1, 0.12):
            start = c + (0.18 * side, -0.05, dz)
            end = start + (0.25 * side, -0.12 + rng.normal(0, 0.03 * v), dz * 0.8 + rng.normal(0, 0.03 * v))
            veins.append(Tube(np.stack([start, end]), (0.07, 0.05)))
    s.append(Structure("left_atrium", [Ellipsoid(c, r, angle=rng.uniform(-0.3 * v, 0.3 * v)), *veins]))
    return s
