"""nnU-Net's deep-supervision weights and the MONAI loss built with them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from medsegzoo.losses import nnunet_deep_supervision_loss, nnunet_deep_supervision_weights


def test_weights_for_stunet_five_outputs() -> None:
    # 1, 1/2, 1/4, 1/8 and 0 for the coarsest, normalised by their sum 1.875
    expected = [1 / 1.875, 0.5 / 1.875, 0.25 / 1.875, 0.125 / 1.875, 0.0]
    assert nnunet_deep_supervision_weights(5) == pytest.approx(expected)
    assert sum(nnunet_deep_supervision_weights(5)) == pytest.approx(1.0)


def test_single_level_and_bad_count() -> None:
    assert nnunet_deep_supervision_weights(1) == [1.0]
    with pytest.raises(ValueError, match="at least one"):
        nnunet_deep_supervision_weights(0)


def test_loss_is_the_weighted_sum_over_levels() -> None:
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 1, 16, 16, 16)).float()
    outputs = [torch.randn(2, 3, 16 // 2**i, 16 // 2**i, 16 // 2**i) for i in range(3)]
    base = DiceCELoss(to_onehot_y=True, softmax=True)
    loss = nnunet_deep_supervision_loss(base, levels=3)(outputs, target)
    weights = [1 / 1.5, 0.5 / 1.5, 0.0]
    expected = sum(
        w * base(o, F.interpolate(target, size=o.shape[2:], mode="nearest-exact") if i else target)
        for i, (w, o) in enumerate(zip(weights, outputs))
    )
    torch.testing.assert_close(loss, expected)
