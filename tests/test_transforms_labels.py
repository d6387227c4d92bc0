"""ConvertLabels / ValidateLabels transforms on MetaTensors and dictionaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medsegzoo.errors import DataValidationError
from medsegzoo.transforms import ConvertLabels, ConvertLabelsd, ValidateLabels, ValidateLabelsd


def kits_label(affine: torch.Tensor | None = None) -> MetaTensor:
    """KiTS-like label: kidney blobs at small and large axis-0 indices, tumor in the first."""
    label = torch.zeros(1, 20, 8, 8)
    label[0, 2:6, 2:6, 2:6] = 1
    label[0, 13:18, 2:6, 2:6] = 1
    label[0, 3, 3, 3] = 2
    out = MetaTensor(label, affine=affine if affine is not None else torch.eye(4))
    out.meta["filename_or_obj"] = "kits19/case_00007/segmentation.nii.gz"
    return out


def test_convert_labels_metatensor_uses_affine() -> None:
    ras = ConvertLabels("kits19", "tct5")(kits_label())
    assert isinstance(ras, MetaTensor) and ras.shape == (1, 20, 8, 8) and ras.dtype == torch.float32
    assert torch.all(ras[0, 2:6, 2:6, 2:6] == 1) and torch.all(ras[0, 13:18, 2:6, 2:6] == 2)
    las = ConvertLabels("kits19", "tct5")(kits_label(torch.diag(torch.tensor([-1.0, 1, 1, 1]))))
    # axis 0 points to the patient's left: the small-index kidney is now the right one (2)
    assert torch.all(las[0, 2:6, 2:6, 2:6] == 2) and torch.all(las[0, 13:18, 2:6, 2:6] == 1)


def test_convert_labels_numpy_without_channel() -> None:
    label = np.array([[[0, 1, 2, 3]]], dtype=np.uint8)
    out = ConvertLabels("msd_liver", "universal32")(label[..., :3])
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.ravel().tolist() == [0, 6, 27]


def test_convert_labelsd_reads_dataset_per_case() -> None:
    convert = ConvertLabelsd(keys="label", target="tct5")
    spleen = {"label": MetaTensor(torch.ones(1, 2, 2, 2)), "dataset": "msd_spleen"}
    liver = {"label": MetaTensor(torch.full((1, 2, 2, 2), 2.0)), "dataset": "lits"}
    assert torch.all(convert(spleen)["label"] == 5)  # tct5 spleen
    assert torch.all(convert(liver)["label"] == 3)  # tumor merged into liver
    with pytest.raises(DataValidationError, match="'dataset'"):
        convert({"label": MetaTensor(torch.ones(1, 2, 2, 2))})


def test_out_of_map_values_name_the_file() -> None:
    label = kits_label()
    label[0, 0, 0, 0] = 5
    with pytest.raises(DataValidationError) as err:
        ConvertLabelsd(keys="label", target="tct5")({"label": label, "dataset": "kits19"})
    assert "case_00007/segmentation.nii.gz" in str(err.value) and "[5]" in str(err.value)
    with pytest.raises(DataValidationError, match="case_00007.*kits19"):
        ValidateLabels("kits19")(label)
    with pytest.raises(DataValidationError, match=r"\[5\]"):
        ValidateLabelsd(keys="label")({"label": label, "dataset": "kits19"})


def test_validate_passes_good_labels_through_unchanged() -> None:
    label = kits_label()
    assert ValidateLabels("kits19")(label) is label
    d = ValidateLabelsd(keys="label", source="kits19")({"label": label})
    assert d["label"] is label


def test_convert_labels_multi_hot_channels() -> None:
    out = ConvertLabels("kits19", "tct5", multi_hot=True)(kits_label())
    assert isinstance(out, MetaTensor) and out.shape == (5, 20, 8, 8)
    assert torch.all(out[0, 2:6, 2:6, 2:6] == 1) and out[0].sum() == 64  # left kidney + tumor
    assert out[1].sum() == 80 and out[2:].sum() == 0
