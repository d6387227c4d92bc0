"""The abdominal phantom (CT or MR): body wall, lungs, spine, pelvis and the abdominal organs
and vessels of one patient as :class:`~.shapes.Structure` records in painting order
(:func:`abdomen_structures`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medsegzoo.data.phantoms.anatomy.shapes import (
    Clipped,
    Ellipsoid,
    Structure,
    Tube,
    ZCylinder,
    jitter,
)
from medsegzoo.data.phantoms.anatomy.tissues import VERTEBRAE


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
        c, r = jitter(rng, (0.16 * side, -0.28, -0.35), (0.07, 0.07, 0.5))
        s.append(Structure("muscle", [Ellipsoid(c, r)]))
    # lungs (lobes split by an oblique fissure; the right upper lobe also by a horizontal one)
    for side, name in ((1, "right"), (-1, "left")):
        c, r = jitter(rng, (0.4 * side, -0.02, 0.92), (0.3, 0.42, 0.4), spread=0.06)
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
        c, r = jitter(rng, (0.42 * side, -0.02, -0.92), (0.1, 0.1, 0.1), spread=0.05)
        s.append(Structure(name, [Ellipsoid(c, r)]))
    c, r = jitter(rng, (0.05, 0.18, -0.32), (0.36, 0.24, 0.3))
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
    c, r = jitter(rng, (0.0, 0.25, -0.84), (0.15, 0.13, 0.12))
    s.append(Structure("bladder", [Ellipsoid(c, r)]))
    if sex == "M":
        c, r = jitter(rng, (0.0, 0.08, -0.97), (0.07, 0.06, 0.07))
        s.append(Structure("prostate", [Ellipsoid(c, r)]))
    else:
        c, r = jitter(rng, (0.0, 0.08, -0.7), (0.12, 0.07, 0.09))
        s.append(Structure("prostate_uterus", [Ellipsoid(c, r)]))
    # upper abdomen organs
    c1, r1 = jitter(rng, (0.38, 0.04, 0.48), (0.34, 0.4, 0.3))
    c2, r2 = jitter(rng, (0.02, 0.2, 0.58), (0.3, 0.19, 0.15))
    s.append(
        Structure("liver", [Ellipsoid(c1, r1, angle=rng.uniform(-0.2, 0.1)), Ellipsoid(c2, r2)])
    )
    c, r = jitter(rng, (-0.3, 0.05, 0.6), (0.17, 0.15, 0.15))
    c2, r2 = jitter(rng, (-0.17, 0.24, 0.42), (0.19, 0.12, 0.14))
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
    c, r = jitter(rng, (-0.55, -0.18, 0.5), (0.1, 0.2, 0.16))
    s.append(Structure("spleen", [Ellipsoid(c, r, angle=-0.5)]))
    for side, name, z in ((1, "kidney_right", 0.12), (-1, "kidney_left", 0.18)):
        c, r = jitter(rng, (0.35 * side, -0.3, z), (0.115, 0.12, 0.21), shift=0.015)
        s.append(Structure("perirenal_fat", [Ellipsoid(c, r * 1.4)]))
        hilum = Ellipsoid(c + (-0.11 * side, 0.02, 0.0), (0.05, 0.05, 0.08))
        s.append(Structure(name, [Ellipsoid(c, r, angle=0.3 * side)], holes=[hilum]))
    for side, name, z in ((1, "adrenal_gland_right", 0.4), (-1, "adrenal_gland_left", 0.43)):
        c, r = jitter(rng, (0.22 * side, -0.24, z), (0.045, 0.07, 0.075), shift=0.01)
        s.append(Structure(name, [Ellipsoid(c, r, angle=0.5 * side)]))
    c, r = jitter(rng, (0.3, 0.3, 0.22), (0.07, 0.08, 0.12), shift=0.015)
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
