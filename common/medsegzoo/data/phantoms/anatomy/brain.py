"""The brain tumour phantom (BraTS-like MR): a skull-stripped brain with a glioma whose
oedema, enhancing rim and necrotic core are the labeled structures (:func:`brain_structures`,
intensities per sequence :data:`~.tissues.BRAIN_MR`).
"""

from __future__ import annotations

import numpy as np

from medsegzoo.data.phantoms.anatomy.shapes import Ellipsoid, Structure, jitter


def brain_structures(rng: np.random.Generator, grade: str) -> list[Structure]:
    """A skull-stripped brain with a glioma: oedema around an enhancing rim and a necrotic core
    (LGG cases may lack the enhancing part, as in BraTS).

    Args:
        rng: the case's anatomy random generator.
        grade: "HGG" or "LGG".
    """
    c, r = jitter(rng, (0.0, 0.0, 0.0), (0.66, 0.82, 0.62), shift=0.01, spread=0.04)
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
