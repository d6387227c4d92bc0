"""PNG overlay of one label map on its image: an axial slice through the labels' centre.

Used by the demo report and the bundles' docs to show one prediction at a glance. Volumes are
brought to RAS (nibabel's closest canonical orientation) and shown in the radiological
convention: anterior up, the patient's right on the image's left. A CT in Hounsfield units is
shown in the soft-tissue window (organs are what the labels mark), anything else between its
1st and 99th percentile; the legend names the classes of a label system or data set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI machines or GPU nodes

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from medsegzoo.data.formats import read_volume
from medsegzoo.errors import DataValidationError
from medsegzoo.taxonomy import get_label_system
from medsegzoo.utils import atomic_path

__all__ = ["CT_SOFT_TISSUE_WINDOW_HU", "axial_centre_slice", "display_window", "save_overlay_png"]

# abdominal soft-tissue window (level 40 HU, width 400 HU): organs apart, fat dark, bone white
CT_SOFT_TISSUE_WINDOW_HU: tuple[float, float] = (-160.0, 240.0)
# air is about -1000 HU; no MR, [0, 1]-scaled or z-scored image comes near this value
_HU_AIR_THRESHOLD = -500.0


def _load_ras(path: str | os.PathLike, what: str) -> np.ndarray:
    """A volume in RAS+ axis order, read with the package's one reader (NIfTI, HDF5, DICOM, ...)."""
    if not Path(path).exists():
        raise DataValidationError(f"overlay: cannot read the {what} {path}: no such file")
    volume = read_volume(path, field=what)  # raises DataValidationError naming the file
    data = volume.array
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataValidationError(f"overlay: the {what} {path} is not a 3D volume (shape {data.shape})")
    return np.asarray(nib.as_closest_canonical(nib.Nifti1Image(data, volume.affine)).dataobj)


def axial_centre_slice(label: np.ndarray) -> int:
    """Index along the last (superior) axis through the centre of the labels' bounding box.

    Args:
        label: 3D label map.

    Returns:
        The slice index; the middle slice when the label is empty.
    """
    z = np.flatnonzero(np.any(label > 0, axis=(0, 1)))
    if z.size == 0:
        return label.shape[2] // 2
    return int((z[0] + z[-1]) // 2)


def display_window(image: np.ndarray) -> tuple[float, float]:
    """Grey-level window for showing ``image``.

    Args:
        image: the volume (any intensity scale).

    Returns:
        :data:`CT_SOFT_TISSUE_WINDOW_HU` when the image looks like CT in Hounsfield units
        (it holds air, below -500), otherwise its 1st and 99th percentiles.
    """
    if image.size and float(np.min(image)) <= _HU_AIR_THRESHOLD:
        return CT_SOFT_TISSUE_WINDOW_HU
    low, high = (float(v) for v in np.percentile(image, [1, 99])) if image.size else (0.0, 1.0)
    return low, (high if high > low else low + 1.0)  # a constant image still gets a valid window


def _legend_names(class_names: Mapping[int, str] | Sequence[str] | None, labels: str | None) -> dict[int, str]:
    if labels is not None:
        return {int(v): n.replace("_", " ") for v, n in get_label_system(labels).labels.items()}
    if isinstance(class_names, Mapping):
        return {int(v): str(n) for v, n in class_names.items()}
    if class_names is not None:
        return {i + 1: str(n) for i, n in enumerate(class_names)}
    return {}


def save_overlay_png(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    out_png: str | os.PathLike,
    class_names: Mapping[int, str] | Sequence[str] | None = None,
    window: tuple[float, float] | None = None,
    alpha: float = 0.45,
    title: str | None = None,
    labels: str | None = None,
) -> Path:
    """Write a PNG of the axial slice through the labels' centre with coloured classes.

    Args:
        image_path: image NIfTI.
        label_path: label map NIfTI on the same grid (a prediction or a ground truth).
        out_png: output file, written atomically.
        class_names: names for the legend, by label value (mapping) or value - 1 (sequence,
            e.g. a label system's classes); default "class <value>".
        window: intensity window (low, high); default :func:`display_window` (CT soft-tissue
            window for an image in HU, else the 1st-99th percentile).
        alpha: opacity of the label colours.
        title: figure title; default the label file's name and the slice index.
        labels: label system or data set of the label map's values ("touchstone9", "btcv",
            ...), resolved through :mod:`medsegzoo.taxonomy` to name the legend's classes;
            takes precedence over ``class_names``.

    Returns:
        The path of the PNG.

    Raises:
        DataValidationError: unreadable files, non-3D volumes or different grids.
        UnknownNameError: ``labels`` names no label system or data set.
    """
    names = _legend_names(class_names, labels)  # an unknown name fails before any file is read
    image = _load_ras(image_path, "image").astype(np.float32)
    label = np.rint(_load_ras(label_path, "label")).astype(np.int64)
    if image.shape != label.shape:
        raise DataValidationError(
            f"overlay: image {image_path} has shape {image.shape} but label {label_path} has {label.shape}"
        )
    k = axial_centre_slice(label)
    # rows: anterior (max y) at the top; columns: patient right (max x) on the left
    img2d = np.flip(image[:, :, k].T, axis=(0, 1))
    lab2d = np.flip(label[:, :, k].T, axis=(0, 1))
    low, high = window if window is not None else display_window(image)
    values = [int(v) for v in np.unique(label) if v > 0]
    max_value = max(values + [1])
    # one fixed colour per label value (tab20 cycles), so the same class keeps its colour
    colours = [plt.get_cmap("tab20")(v % 20) for v in range(max_value + 1)]
    fig, ax = plt.subplots(figsize=(6.5, 5), dpi=100)
    ax.imshow(img2d, cmap="gray", vmin=float(low), vmax=float(high), interpolation="nearest")
    masked = np.ma.masked_where(lab2d == 0, lab2d)
    ax.imshow(masked, cmap=ListedColormap(colours), vmin=0, vmax=max_value, alpha=alpha, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title if title is not None else f"{Path(label_path).name}, axial slice {k}", fontsize=9)
    present = {int(v) for v in np.unique(lab2d) if v > 0}
    handles = [Patch(color=colours[v], label=names.get(v, f"class {v}")) for v in values if v in present]
    if handles:  # beside the image, so that it hides no anatomy
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    out = Path(out_png)
    try:
        with atomic_path(out, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")  # keep the legend beside the axes
    finally:
        plt.close(fig)
    return out
