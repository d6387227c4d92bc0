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

Modules: :mod:`.tissues` (tissue table, class tuples, MR tables), :mod:`.shapes` (solids,
structures, the body frame, painting), :mod:`.abdomen`, :mod:`.left_atrium` and :mod:`.brain`
(the structures of the three anatomies), :mod:`.lesions` (lesions of the abdominal phantom).
"""

from __future__ import annotations

from medsegzoo.data.phantoms.anatomy.abdomen import abdomen_structures
from medsegzoo.data.phantoms.anatomy.brain import brain_structures
from medsegzoo.data.phantoms.anatomy.left_atrium import left_atrium_structures
from medsegzoo.data.phantoms.anatomy.lesions import (
    LESION_HOSTS,
    MIN_LESION_RADIUS,
    TUMOR_CLASSES,
    Lesion,
    draw_lesions,
    lesion_structures,
)
from medsegzoo.data.phantoms.anatomy.shapes import (
    BodyFrame,
    Clipped,
    Ellipsoid,
    Shape,
    Structure,
    Tube,
    ZCylinder,
    paint,
)
from medsegzoo.data.phantoms.anatomy.tissues import (
    ABDOMEN_CLASSES,
    BRAIN_CLASSES,
    BRAIN_MR,
    BRAIN_SEQUENCES,
    LA_CLASSES,
    LA_MR,
    STRUCTURE_HOSTS,
    TISSUES,
    VERTEBRAE,
    Tissue,
)

__all__ = [
    "ABDOMEN_CLASSES",
    "BRAIN_CLASSES",
    "BRAIN_MR",
    "BRAIN_SEQUENCES",
    "LA_CLASSES",
    "LA_MR",
    "LESION_HOSTS",
    "MIN_LESION_RADIUS",
    "STRUCTURE_HOSTS",
    "TISSUES",
    "TUMOR_CLASSES",
    "VERTEBRAE",
    "BodyFrame",
    "Clipped",
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
    "lesion_structures",
    "paint",
]


