"""A phantom data set and its datalist in one call: what ``medsegzoo phantoms`` + ``medsegzoo datalist`` do.

The benchmarks, the demo and the experiments need the same two steps a user runs on the command
line: write synthetic cases in a public layout, then read the folder back with that layout's
reader into a datalist (so the reading code is exercised exactly as on a real download).
"""

from __future__ import annotations

import os
from pathlib import Path

from medsegzoo.data.phantoms.layouts import write_phantom_dataset
from medsegzoo.data.readers import build_datalist, write_datalist

__all__ = ["make_phantom_set"]


def make_phantom_set(
    out_dir: str | os.PathLike,
    layout: str,
    cases: int,
    size: int = 64,
    site: int = 0,
    seed: int = 0,
    split: str | None = "0.6/0.2/0.2",
    unlabeled: int = 0,
    tumors: bool = False,
    modality: str | None = None,
    overwrite: bool = True,
    tumor_probability: float | None = None,
    variation: float = 1.0,
) -> tuple[Path, Path]:
    """Write ``cases`` phantoms in ``layout`` and their datalist.

    Args:
        out_dir: folder of the data set (created; replaced when ``overwrite``).
        layout: public layout name (``btcv``, ``flare22``, ``la``, ``kits19``, ...).
        cases: labeled cases.
        size: field of view in nominal 1 mm voxels per axis.
        site: acquisition site.
        seed: data set seed (also the seed of the random split).
        split: ``TRAIN/VAL/TEST`` fractions of the labeled cases, or None for the layout's
            official split.
        unlabeled: images without labels (layouts that keep them).
        tumors: draw lesions.
        modality: "CT" or "MR" (default: the layout's).
        overwrite: replace an existing folder.
        tumor_probability: probability that a case has lesions (default: the layout's).
        variation: how much patients differ (left-atrium layouts only; 1 is the default).

    Returns:
        ``(dataset_dir, datalist_path)``; the datalist (``datalist.json`` inside the folder) has
        paths relative to ``dataset_dir``.
    """
    root = write_phantom_dataset(
        out_dir, layout, cases=cases, size=size, site=site, seed=seed, modality=modality, tumors=tumors,
        unlabeled=unlabeled, overwrite=overwrite, tumor_probability=tumor_probability, variation=variation,
    )
    datalist = build_datalist(layout, root, split=split, seed=seed)
    path = write_datalist(datalist, Path(out_dir) / "datalist.json")
    return Path(root), Path(path)
