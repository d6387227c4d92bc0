"""Intensity presets against hand-computed values and numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsegzoo.errors import MedSegZooError, UnknownNameError
from medsegzoo.transforms import intensity_preset


def test_ct_windows_hand_values() -> None:
    hu = torch.tensor([[-2000.0, -1024.0, 0.0, 512.0, 1024.0, 3000.0]])
    tct = intensity_preset("tct_ct")(hu)
    np.testing.assert_allclose(np.asarray(tct), [[0.0, 0.0, 0.5, 0.75, 1.0, 1.0]], atol=1e-6)
    hu = torch.tensor([[-1000.0, -175.0, 37.5, 250.0, 900.0]])
    universal = intensity_preset("universal_ct")(hu)
    np.testing.assert_allclose(np.asarray(universal), [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-6)


def test_nnunet_ct_matches_clip_then_zscore() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(0, 400, size=(1, 8, 8, 8)).astype(np.float32)
    stats = {"lower": -300.0, "upper": 450.0, "mean": 60.0, "std": 120.0}
    expected = (np.clip(image, -300.0, 450.0) - 60.0) / 120.0
    out = intensity_preset("nnunet_ct", **stats)(image)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)
    # fingerprint-style key names and the dictionary form
    fingerprint = {"percentile_00_5": -300.0, "percentile_99_5": 450.0, "mean": 60.0, "std": 120.0}
    d = intensity_preset("nnunet_ct", keys="image", **fingerprint)({"image": image})
    np.testing.assert_allclose(np.asarray(d["image"]), expected, rtol=1e-5, atol=1e-5)


def test_mr_zscore_over_nonzero_voxels() -> None:
    rng = np.random.default_rng(2)
    image = np.zeros((1, 6, 6, 6), dtype=np.float32)
    image[0, 1:5, 1:5, 1:5] = rng.uniform(100, 500, size=(4, 4, 4))
    out = np.asarray(intensity_preset("mr_zscore")(image))
    inside = image[0, 1:5, 1:5, 1:5]
    np.testing.assert_allclose(
        out[0, 1:5, 1:5, 1:5], (inside - inside.mean()) / inside.std(), rtol=1e-4
    )
    assert np.all(out[image == 0] == 0)


def test_bad_presets() -> None:
    with pytest.raises(UnknownNameError, match="ct_window"):
        intensity_preset("ct_window")
    with pytest.raises(MedSegZooError, match="'std'"):
        intensity_preset("nnunet_ct", lower=-100, upper=100, mean=0)
    with pytest.raises(MedSegZooError, match="std > 0"):
        intensity_preset("nnunet_ct", lower=-100, upper=100, mean=0, std=0)
