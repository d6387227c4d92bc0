"""Universal Model loss: masked per-class BCE + per-volume Dice against a hand-written reference."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from medsegzoo.errors import DataValidationError
from medsegzoo.losses.universal import UniversalLoss, mask_unlabeled_channels


def _reference(logits: torch.Tensor, target: torch.Tensor, labeled: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    terms = []
    for b in range(logits.shape[0]):
        for k in range(logits.shape[1]):
            if not labeled[b, k]:
                continue
            x, y = logits[b, k].flatten(), target[b, k].flatten()
            bce = F.binary_cross_entropy_with_logits(x, y)
            p = x.sigmoid()
            dice = 1 - (2 * (p * y).sum() + smooth) / (p.sum() + y.sum() + smooth)
            terms.append(bce + dice)
    return torch.stack(terms).mean()


def _case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    target = (torch.rand(2, 3, 4, 4, 4) > 0.6).float()
    labeled = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.bool)
    return logits, target, labeled


def test_matches_reference_and_ignores_unlabeled_exactly() -> None:
    logits, target, labeled = _case()
    loss = UniversalLoss()(logits, target, labeled)
    torch.testing.assert_close(loss, _reference(logits, target, labeled))
    loss.backward()
    grad = logits.grad
    assert grad is not None
    for b in range(2):
        for k in range(3):
            if labeled[b, k]:
                assert grad[b, k].abs().sum() > 0
            else:
                assert torch.count_nonzero(grad[b, k]) == 0  # exactly zero


def test_unlabeled_targets_do_not_change_the_loss() -> None:
    logits, target, labeled = _case()
    changed = target.clone()
    changed[~labeled] = 1.0 - changed[~labeled]
    loss = UniversalLoss()
    assert torch.equal(loss(logits, target, labeled), loss(logits, changed, labeled))


def test_ignore_value_encoding_equals_explicit_mask() -> None:
    logits, target, labeled = _case()
    encoded = mask_unlabeled_channels(target, labeled)
    assert torch.all(encoded[~labeled] == -1) and torch.equal(encoded[labeled], target[labeled])
    loss = UniversalLoss()
    torch.testing.assert_close(loss(logits, encoded), loss(logits, target, labeled))


def test_hand_computed_perfect_and_empty_cases() -> None:
    target = torch.zeros(1, 1, 2, 2, 2)
    target[0, 0, 0] = 1.0
    logits = (target * 2 - 1) * 100.0  # confident and right
    assert float(UniversalLoss()(logits, target, torch.ones(1, 1))) == pytest.approx(0.0, abs=1e-6)
    nothing = UniversalLoss()(logits.clone().requires_grad_(True), target, torch.zeros(1, 1))
    assert float(nothing.detach()) == 0.0 and nothing.requires_grad


def test_shape_errors() -> None:
    with pytest.raises(DataValidationError, match="differ"):
        UniversalLoss()(torch.zeros(1, 2, 4), torch.zeros(1, 3, 4))
    with pytest.raises(DataValidationError, match="labeled mask"):
        UniversalLoss()(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.ones(2, 2))
