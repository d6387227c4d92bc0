"""Left Atrium (2018 challenge, semi-supervised release) layout (``la``):
``2018LA_Seg_Training Set/<id>/mri_norm2.h5`` (datasets ``image``, normalised, and ``label``)
with 20-character case ids, + ``train.list`` / ``test.list`` (80/20 of the labeled cases);
unlabeled cases are appended to ``train.list`` with their labels kept in the file, as in the
release (semi-supervised methods take the first N as labeled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsegzoo.data.phantoms.layouts._writing import split_counts
from medsegzoo.data.phantoms.layouts.base import LayoutContext
from medsegzoo.utils.atomic import atomic_path, atomic_write_text


def _la_case_id(rng: np.random.Generator) -> str:
    """A 20-character id like the LA release's folder names (upper-case letters and digits)."""
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    return "".join(rng.choice(alphabet, size=20))


def write_la(ctx: LayoutContext) -> Path:
    """Write the h5 cases and the two lists; return OUT."""
    import h5py

    root = ctx.out / "2018LA_Seg_Training Set"
    n_train = split_counts(ctx.labeled, [0.8, 0.2])[0]
    train_list, test_list = [], []
    for index, labeled in ctx.cases():
        phantom = ctx.make(index)
        case_id = _la_case_id(np.random.default_rng([*phantom.metadata["seed"], 7]))
        image = phantom.image
        normalised = ((image - image.mean()) / (image.std() or 1.0)).astype(np.float32)
        path = root / case_id / "mri_norm2.h5"
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
            handle.create_dataset("image", data=normalised, compression="gzip")
            handle.create_dataset(
                "label", data=phantom.label_map(ctx.spec.dataset), compression="gzip"
            )
        in_train = not labeled or index < n_train
        (train_list if in_train else test_list).append((labeled, case_id))
        split = "training" if labeled and in_train else "test" if labeled else "unlabeled"
        ctx.record(case_id, phantom, labeled, split, image=path, label=path)
    train_list.sort(key=lambda item: not item[0])  # labeled cases first (the methods' first N)
    atomic_write_text(ctx.out / "train.list", "".join(f"{c}\n" for _, c in train_list))
    atomic_write_text(ctx.out / "test.list", "".join(f"{c}\n" for _, c in test_list))
    return ctx.out
