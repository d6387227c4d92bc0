"""LabeledClassesMask(d): multi-hot labeled classes that survive MONAI batching; ForegroundUnion(d)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, list_data_collate
from monai.transforms import Compose, RandCropByPosNegLabeld
from monai.transforms.utils import map_binary_to_indices

from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.transforms import (
    ForegroundUnion,
    ForegroundUniond,
    LabeledClassesMask,
    LabeledClassesMaskd,
)


def test_mask_over_system_classes() -> None:
    tct = LabeledClassesMask("tct5")  # kidney_left, kidney_right, liver, pancreas, spleen
    assert tct(["kidney", "kidney_tumor"]).tolist() == [1, 1, 0, 0, 0]
    assert tct(["Spleen"]).tolist() == [0, 0, 0, 0, 1]
    assert tct(["liver", "liver_tumor", "bone"]).tolist() == [0, 0, 1, 0, 0]
    assert tct("pancreas").tolist() == [0, 0, 0, 1, 0]
    universal = LabeledClassesMask("universal32", include_background=True, dtype=torch.bool)
    out = universal(["kidney", "kidney_tumor"])
    assert out.dtype == torch.bool and out.shape == (33,)
    assert out.nonzero().ravel().tolist() == [0, 2, 3, 26]  # background, kR, kL, kidney tumor
    with pytest.raises(UnknownNameError, match="kidnee"):
        tct(["kidnee"])


def test_masks_batch_with_list_data_collate() -> None:
    cases = [
        {
            "case_id": "kits_1",
            "labeled_classes": ["kidney", "kidney_tumor"],
            "image": torch.zeros(1, 4, 4, 4),
        },
        {"case_id": "spleen_1", "labeled_classes": ["spleen"], "image": torch.zeros(1, 4, 4, 4)},
        {"case_id": "pancreas_1", "dataset": "msd_pancreas", "image": torch.zeros(1, 4, 4, 4)},
    ]
    transform = LabeledClassesMaskd(keys="labeled_classes", system="tct5")
    loader = DataLoader(Dataset(cases, transform), batch_size=3, collate_fn=list_data_collate)
    batch = next(iter(loader))
    assert batch["labeled_classes"].shape == (3, 5)
    assert batch["labeled_classes"].tolist() == [
        [1, 1, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 1, 0],  # derived from the data set entry
    ]
    assert batch["image"].shape == (3, 1, 4, 4, 4)


def test_output_key_and_missing_list() -> None:
    transform = LabeledClassesMaskd(keys="labeled_classes", system="aeval8", output_key="mask")
    d = transform({"labeled_classes": ["liver"]})
    assert d["labeled_classes"] == ["liver"] and d["mask"].tolist()[0] == 1
    with pytest.raises(DataValidationError, match="neither"):
        LabeledClassesMaskd(keys="labeled_classes", system="aeval8")({"case_id": "x"})
    skipped = LabeledClassesMaskd(keys="labeled_classes", system="aeval8", allow_missing_keys=True)
    assert skipped({"case_id": "x"}) == {"case_id": "x"}


def test_foreground_union_keeps_the_first_class_for_patch_sampling() -> None:
    # a multi-hot label whose only foreground is channel 0 (spleen in universal32 order)
    label = torch.zeros(3, 16, 16, 16)
    label[0, 2:5, 2:5, 2:5] = 1
    image = torch.ones(1, 16, 16, 16)
    fg_monai, _ = map_binary_to_indices(label, image, 0)
    assert len(fg_monai) == 0  # MONAI drops channel 0 as background: the reason for the union
    union = ForegroundUnion()(label)
    assert union.shape == (1, 16, 16, 16) and union.dtype == label.dtype
    assert int(union.sum()) == 27
    fg, _ = map_binary_to_indices(union, image, 0)
    assert len(fg) == 27
    np.testing.assert_array_equal(ForegroundUnion()(label.numpy()), union.numpy())
    # positive-only sampling on the union: every 4^3 patch touches the spleen
    pipeline = Compose([
        ForegroundUniond(keys="label", output_key="fg"),
        RandCropByPosNegLabeld(keys=["image", "label"], label_key="fg", spatial_size=(4, 4, 4), pos=1, neg=0,
                               num_samples=8, image_key="image", image_threshold=0),
    ])
    pipeline.set_random_state(seed=0)
    patches = pipeline({"image": image, "label": label})
    assert all(p["label"][0].sum() > 0 for p in patches)
    with pytest.raises(DataValidationError, match="shape"):
        ForegroundUnion()(torch.zeros(5))
