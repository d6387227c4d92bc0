"""PNG overlay of one label map on its image: an axial slice through the labels' centre.

Used by the demo report and the bundles' docs to show one prediction at a glance. Volumes are
brought to RAS (nibabel's closest canonical orientation) and shown in the radiological
convention: anterior up, the patient's right on the image's left.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI machines or GPU nodes

import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from medsegzoo.errors import DataValidationError  # noqa: E402
from medsegzoo.utils import atomic_path  # noqa: E402

__all__ = ["axial_centre_slice", "save_overlay_png"]


def _load_ras(path: str | os.PathLike, what: str) -> np.ndarray:
    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
    except (FileNotFoundError, nib.filebasedimages.ImageFileError) as err:
        raise DataValidationError(f"overlay: cannot read the {what} {path}: {err}") from err
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataValidationError(f"overlay: the {what} {path} is not a 3D volume (shape {data.shape})")
    return data


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


def save_overlay_png(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    out_png: str | os.PathLike,
    class_names: Mapping[int, str] | Sequence[str] | None = None,
    window: tuple[float, float] | None = None,
    alpha: float = 0.45,
    title: str | None = None,
) -> Path:
    """Write a PNG of the axial slice through the labels' centre with coloured classes.

    Args:
        image_path: image NIfTI.
        label_path: label map NIfTI on the same grid (a prediction or a ground truth).
        out_png: output file, written atomically.
        class_names: names for the legend, by label value (mapping) or value - 1 (sequence,
            e.g. a label system's classes); default "class <value>".
        window: intensity window (low, high); default the image's 1st-99th percentile.
        alpha: opacity of the label colours.
        title: figure title; default the label file's name and the slice index.

    Returns:
        The path of the PNG.

    Raises:
        DataValidationError: unreadable files, non-3D volumes or different grids.
    """
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
    low, high = window if window is not None else np.percentile(image, [1, 99])
    values = [int(v) for v in np.unique(label) if v > 0]
    if isinstance(class_names, Mapping):
        names = {int(v): str(n) for v, n in class_names.items()}
    elif class_names is not None:
        names = {i + 1: str(n) for i, n in enumerate(class_names)}
    else:
        names = {}
    max_value = max(values + [1])
    # one fixed colour per label value (tab20 cycles), so the same class keeps its colour
    colours = [plt.get_cmap("tab20")(v % 20) for v in range(max_value + 1)]
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.imshow(img2d, cmap="gray", vmin=float(low), vmax=float(high), interpolation="nearest")
    masked = np.ma.masked_where(lab2d == 0, lab2d)
    ax.imshow(masked, cmap=ListedColormap(colours), vmin=0, vmax=max_value, alpha=alpha, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title if title is not None else f"{Path(label_path).name}, axial slice {k}", fontsize=9)
    present = {int(v) for v in np.unique(lab2d) if v > 0}
    handles = [Patch(color=colours[v], label=names.get(v, f"class {v}")) for v in values if v in present]
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.7)
    fig.tight_layout()
    out = Path(out_png)
    try:
        with atomic_path(out, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return out
