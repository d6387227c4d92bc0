"""Acquisition sites: the systematic differences between scanners and hospitals.

A *site* is everything that changes when the same patient is scanned elsewhere: voxel
spacing, field of view, contrast phase, reconstruction blur, noise, intensity calibration and
the orientation in which the file is stored. A model trained on phantoms of one site meets
all of these at once on another, which is what makes the cross-site (A-Eval / Touchstone
out-of-distribution) experiments of the bundles measurable on synthetic data.

Site table (sites 0-4 are fixed; a site index K >= 5 draws every parameter from a random
generator seeded with K, within the ranges of the table):

====  ================  ==================  =======  =====  =====  =====  ===========  ===========  ======  =============
site  manufacturer      spacing x,y,z (mm)  scale    shift  noise  blur   crop top/    file         MR      contrast
                                                     (HU)   (SD)   (mm)   bottom       orientation  bias    phase
====  ================  ==================  =======  =====  =====  =====  ===========  ===========  ======  =============
0     SIEMENS           1.0, 1.0, 1.0       1.00     0      10     0.6    0 / 0        RAS          0.10    portal venous
1     GE MEDICAL        0.8, 0.8, 2.5       1.00     +20    18     1.0    5 % / 10 %   LPS          0.25    arterial
2     Philips           1.5, 1.5, 1.5       0.92     -25    28     1.6    12 % / 0     LAS          0.30    portal venous
3     TOSHIBA           1.2, 1.2, 3.0       1.05     +10    14     0.9    0 / 15 %     RPI          0.20    non-contrast
4     UIH               0.9, 0.9, 2.0       1.00     -10    40     0.7    8 % / 8 %    LPI          0.35    portal venous
====  ================  ==================  =======  =====  =====  =====  ===========  ===========  ======  =============

* spacing: the grid a site samples. The phantom's field of view is ``size`` mm at the
  nominal 1 mm spacing on every axis (phantoms are small patients), so a site with 2.5 mm
  slices stores ``size / 2.5`` slices of the same anatomy.
* scale / shift: ``stored = scale * value + shift`` (CT: HU, MR: arbitrary units, where the
  shift is applied as a fraction of 1000).
* noise: standard deviation of additive Gaussian noise (CT, in HU) or of the Rician noise's
  Gaussian components (MR, arbitrary units on a 0-1000 scale).
* blur: Gaussian point-spread function, standard deviation in mm (reconstruction kernel).
* crop: fraction of the field of view removed at the top (lung bases) and bottom (pelvis).
* file orientation: axis codes of the stored array (nibabel's ``aff2axcodes``); a reader must
  reorient (e.g. to RAS) to compare sites voxel by voxel. The affine always states the true
  geometry.
* MR bias: strength of the smooth multiplicative bias field (log amplitude).
* contrast phase: which column of the CT tissue table (``anatomy.TISSUES``) is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medsegzoo.errors import MedSegZooError

__all__ = [
    "NOMINAL_SPACING_MM",
    "PHASES",
    "SITES",
    "Site",
    "SiteGrid",
    "acquire",
    "get_site",
    "site_grid",
    "to_orientation",
]

NOMINAL_SPACING_MM = 1.0
PHASES: tuple[str, ...] = ("portal_venous", "arterial", "non_contrast")
ORIENTATIONS: tuple[str, ...] = ("RAS", "LPS", "LAS", "RPI", "LPI", "RAI", "LAI", "RPS")
_MANUFACTURERS = (
    ("SIEMENS", "SOMATOM Definition AS"),
    ("GE MEDICAL SYSTEMS", "LightSpeed VCT"),
    ("Philips", "Brilliance 64"),
    ("TOSHIBA", "Aquilion ONE"),
    ("UIH", "uCT 760"),
)


@dataclass(frozen=True)
class Site:
    """Acquisition parameters of one site (see the module table).

    Attributes:
        index: site number.
        manufacturer: scanner manufacturer (metadata and DICOM header).
        model: scanner model.
        spacing: voxel spacing (x, y, z) in mm.
        intensity_scale: multiplicative calibration.
        intensity_shift: additive calibration (HU; MR: per mille of the range).
        noise_sd: noise standard deviation (HU / arbitrary units).
        blur_mm: Gaussian blur standard deviation in mm.
        crop_top: fraction of the field of view cut at the top.
        crop_bottom: fraction cut at the bottom.
        orientation: axis codes of the stored file ("RAS", "LPS", ...).
        mr_bias: MR bias field strength (log amplitude).
        phase: CT contrast phase (one of :data:`PHASES`).
        origin_mm: table position: world offset of the field of view's centre.
    """

    index: int
    manufacturer: str
    model: str
    spacing: tuple[float, float, float]
    intensity_scale: float
    intensity_shift: float
    noise_sd: float
    blur_mm: float
    crop_top: float
    crop_bottom: float
    orientation: str
    mr_bias: float
    phase: str
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def name(self) -> str:
        """Institution name written into metadata: ``site<index>``."""
        return f"site{self.index}"


SITES: tuple[Site, ...] = (
    Site(
        0,
        *_MANUFACTURERS[0],
        (1.0, 1.0, 1.0),
        1.00,
        0.0,
        10.0,
        0.6,
        0.0,
        0.0,
        "RAS",
        0.10,
        "portal_venous",
    ),
    Site(
        1,
        *_MANUFACTURERS[1],
        (0.8, 0.8, 2.5),
        1.00,
        20.0,
        18.0,
        1.0,
        0.05,
        0.10,
        "LPS",
        0.25,
        "arterial",
        (3.0, -12.0, 40.0),
    ),
    Site(
        2,
        *_MANUFACTURERS[2],
        (1.5, 1.5, 1.5),
        0.92,
        -25.0,
        28.0,
        1.6,
        0.12,
        0.0,
        "LAS",
        0.30,
        "portal_venous",
        (-5.0, 8.0, -120.0),
    ),
    Site(
        3,
        *_MANUFACTURERS[3],
        (1.2, 1.2, 3.0),
        1.05,
        10.0,
        14.0,
        0.9,
        0.0,
        0.15,
        "RPI",
        0.20,
        "non_contrast",
        (0.0, 20.0, 300.0),
    ),
    Site(
        4,
        *_MANUFACTURERS[4],
        (0.9, 0.9, 2.0),
        1.00,
        -10.0,
        40.0,
        0.7,
        0.08,
        0.08,
        "LPI",
        0.35,
        "portal_venous",
        (10.0, 0.0, -60.0),
    ),
)


def get_site(index: int) -> Site:
    """The site with this index: the table for 0-4, a seeded random draw beyond.

    Args:
        index: site number (>= 0).

    Returns:
        The :class:`Site`.

    Raises:
        MedSegZooError: negative index.
    """
    index = int(index)
    if index < 0:
        raise MedSegZooError(f"site must be a non-negative integer, got {index}")
    if index < len(SITES):
        return SITES[index]
    rng = np.random.default_rng([index, 0x517E])
    inplane = float(np.round(rng.uniform(0.7, 1.6), 2))
    manufacturer, model = _MANUFACTURERS[int(rng.integers(len(_MANUFACTURERS)))]
    return Site(
        index,
        manufacturer,
        model,
        (inplane, inplane, float(np.round(rng.uniform(1.0, 3.0), 1))),
        float(np.round(rng.uniform(0.9, 1.1), 3)),
        float(np.round(rng.uniform(-30, 30), 1)),
        float(np.round(rng.uniform(8, 45), 1)),
        float(np.round(rng.uniform(0.5, 1.8), 2)),
        float(np.round(rng.uniform(0.0, 0.15), 3)),
        float(np.round(rng.uniform(0.0, 0.15), 3)),
        ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))],
        float(np.round(rng.uniform(0.1, 0.4), 2)),
        PHASES[int(rng.integers(len(PHASES)))],
        tuple(float(v) for v in np.round(rng.uniform(-50, 50, size=3), 1)),
    )


@dataclass(frozen=True)
class SiteGrid:
    """The voxel grid a site samples, in RAS orientation.

    Attributes:
        axes: normalised positions (field of view = [-1, 1]) of the voxel centres per axis.
        spacing: voxel size in mm (x, y, z).
        affine: voxel-to-world RAS+ affine of the RAS-ordered array.
    """

    axes: tuple[np.ndarray, np.ndarray, np.ndarray]
    spacing: tuple[float, float, float]
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape."""
        return (len(self.axes[0]), len(self.axes[1]), len(self.axes[2]))


def site_grid(size: int, site: Site, *, crop: bool = True) -> SiteGrid:
    """The grid of a phantom of ``size`` nominal voxels per axis acquired at ``site``.

    Args:
        size: field of view in nominal (1 mm) voxels per axis.
        site: the site.
        crop: apply the site's field-of-view crop (top/bottom slices).

    Returns:
        The :class:`SiteGrid`.

    Raises:
        MedSegZooError: ``size`` below 8.
    """
    if int(size) < 8:
        raise MedSegZooError(f"phantom size must be at least 8 voxels, got {size}")
    half_fov = size * NOMINAL_SPACING_MM / 2.0
    axes = []
    for spacing in site.spacing:
        n = max(4, round(size * NOMINAL_SPACING_MM / spacing))
        axes.append((np.arange(n) - (n - 1) / 2.0) * spacing / half_fov)
    if crop:
        z = axes[2]
        keep = (z >= -1.0 + 2.0 * site.crop_bottom) & (z <= 1.0 - 2.0 * site.crop_top)
        if keep.sum() < 4:  # never crop away the whole volume
            keep = np.zeros_like(keep)
            keep[len(z) // 2 - 2 : len(z) // 2 + 2] = True
        axes[2] = z[keep]
    affine = np.eye(4)
    for a in range(3):
        affine[a, a] = site.spacing[a]
        affine[a, 3] = axes[a][0] * half_fov + site.origin_mm[a]
    return SiteGrid((axes[0], axes[1], axes[2]), tuple(float(s) for s in site.spacing), affine)


def _bias_field(
    shape: tuple[int, ...], axes: tuple[np.ndarray, ...], strength: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth multiplicative field ``exp(strength * f)`` with ``f`` a random plane-wave sum in [-1, 1]."""
    field = np.zeros(shape, np.float32)
    grids = [axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]]
    for _ in range(2):
        freq = rng.normal(size=3) * 0.35
        phase = rng.uniform(0, 2 * np.pi)
        field += np.sin(
            2 * np.pi * sum(f * g for f, g in zip(freq, grids, strict=True)) + phase
        ).astype(np.float32)
    return np.exp(np.float32(strength / 2.0) * field)


def acquire(
    intensity: np.ndarray,
    site: Site,
    grid: SiteGrid,
    modality: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Turn ideal tissue intensities into what the site's scanner stores.

    CT: blur, additive Gaussian noise, calibration, clipped to [-1024, 3071] HU.
    MR: bias field, blur, Rician noise (magnitude of a complex signal with Gaussian noise),
    calibration, clipped at 0.

    Args:
        intensity: ideal intensities on the site grid (float32).
        site: the site.
        grid: its grid (spacing, axes).
        modality: "CT" or "MR".
        rng: the case's acquisition random generator.

    Returns:
        float32 image.
    """
    image = np.asarray(intensity, np.float32)
    if modality == "MR":
        image = image * _bias_field(image.shape, grid.axes, site.mr_bias, rng)
    sigma = [site.blur_mm / s for s in grid.spacing]
    # truncate at 3 SD: the default 4 costs a third more time for no visible difference
    image = ndimage.gaussian_filter(image, sigma=sigma, truncate=3.0, mode="nearest")
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(site.noise_sd)
    if modality == "MR":
        imaginary = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(site.noise_sd)
        image = np.sqrt((image + noise) ** 2 + imaginary**2)
        image = image * np.float32(site.intensity_scale) + np.float32(site.intensity_shift)
        return np.maximum(image, 0.0).astype(np.float32)
    image += noise
    image = image * np.float32(site.intensity_scale) + np.float32(site.intensity_shift)
    return np.clip(image, -1024.0, 3071.0).astype(np.float32)


def to_orientation(
    array: np.ndarray, affine: np.ndarray, codes: str
) -> tuple[np.ndarray, np.ndarray]:
    """Reorder a RAS-oriented array (and its affine) to the axis codes ``codes``.

    The world geometry is unchanged: ``new_affine @ new_index == affine @ old_index`` for the
    same voxel. Codes may permute axes (``"IPL"``: KiTS19's slices-first storage).

    Args:
        array: 3D array in the orientation of ``affine``.
        affine: its voxel-to-world affine.
        codes: target axis codes, three letters from R/L, A/P, S/I.

    Returns:
        ``(array, affine)`` in the target orientation (the array is a view when possible).
    """
    import nibabel.orientations as nio

    current = nio.io_orientation(affine)
    target = nio.axcodes2ornt(tuple(codes))
    transform = nio.ornt_transform(current, target)
    new_array = nio.apply_orientation(array, transform)
    new_affine = affine @ nio.inv_ornt_aff(transform, array.shape)
    return new_array, new_affine
