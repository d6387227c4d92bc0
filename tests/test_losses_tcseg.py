"""Tests of TCSeg's reliability engine and loss terms on tiny hand-made tensors.

Covers medsegzoo.losses.reliability and medsegzoo.losses.tcseg.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from medsegzoo.losses.reliability import (
    class_prototypes,
    decoder_disagreement,
    ensemble_confidence,
    perturbation_mask,
    prototype_similarity,
    reliability_masks,
)
from medsegzoo.errors import MedSegZooError
from medsegzoo.losses.tcseg import (
    TCSegLoss,
    calibration_loss,
    mix_loss,
    pseudo_label_loss,
    random_box_mask,
    reliability_cutmix,
    sigmoid_rampup,
)


def two_class(fg: list[float]) -> torch.Tensor:
    """(1, 2, N) probabilities from a list of foreground probabilities."""
    f = torch.tensor(fg, dtype=torch.float64)
    return torch.stack([1 - f, f]).unsqueeze(0)


def test_ensemble_confidence_hand_computed() -> None:
    views = [two_class([0.9, 0.2]), two_class([0.7, 0.4]), two_class([0.8, 0.3]), two_class([1.0, 0.1])]
    mean, conf = ensemble_confidence(views)
    assert torch.allclose(mean[0, 1], torch.tensor([0.85, 0.25], dtype=torch.float64))
    assert torch.allclose(conf[0], torch.tensor([0.85, 0.75], dtype=torch.float64))
    with pytest.raises(MedSegZooError):
        ensemble_confidence([two_class([0.1]), two_class([0.1, 0.2])])


def test_disagreement_is_half_l1() -> None:
    assert torch.allclose(decoder_disagreement(two_class([0.9, 0.5]), two_class([0.8, 0.5])), torch.tensor([[0.1, 0.0]], dtype=torch.float64))


def test_confident_but_uncertain_voxel_is_excluded() -> None:
    # voxel 0: all four views confident (mean fg 0.95) and agreeing -> positive
    # voxel 1: mean fg 0.95 (confident) but the student decoders disagree by 0.1 > tau -> excluded
    # voxel 2: agreeing but mean fg 0.5 -> not confident, not positive
    s = [two_class([0.95, 0.90, 0.5]), two_class([0.95, 1.00, 0.5])]
    t = [two_class([0.95, 0.95, 0.5]), two_class([0.95, 0.95, 0.5])]
    masks = reliability_masks(s, t, tau=0.05, tau_min=0.1, tau_max=0.85)
    assert masks.confidence[0, 1] >= 0.85
    assert masks.positive[0].tolist() == [True, False, False]
    assert masks.unreliable[0].tolist() == [False, True, True]
    # without the uncertainty axis the confident-but-uncertain voxel is accepted ("w/o U(v)")
    assert reliability_masks(s, t, use_uncertainty=False).positive[0].tolist() == [True, True, False]
    # without the confidence axis every agreeing voxel is positive and nothing is negative ("w/o C(v)")
    no_c = reliability_masks(s, t, use_confidence=False)
    assert no_c.positive[0].tolist() == [True, False, True]
    assert not no_c.negative.any()


def test_feature_space_uncertainty_excludes_voxels() -> None:
    s = [two_class([0.95, 0.95]), two_class([0.95, 0.95])]
    t = [two_class([0.95, 0.95]), two_class([0.95, 0.95])]
    sims_a = two_class([0.9, 0.9])
    sims_b = two_class([0.9, 0.6])  # voxel 1: prototype maps disagree by 0.3 > tau_feature
    masks = reliability_masks(s, t, [sims_a, sims_b], [sims_a, sims_a], tau_feature=0.1)
    assert masks.positive[0].tolist() == [True, False]
    with pytest.raises(MedSegZooError, match="both"):
        reliability_masks(s, t, [sims_a, sims_b], None)


def test_negative_labels_only_below_tau_min() -> None:
    # mean foreground 0.05 (<= 0.1), 0.1 (== bound), 0.2 (> bound); all views agree
    views = [two_class([0.05, 0.1, 0.2])] * 2
    masks = reliability_masks(views, views, tau_min=0.1, tau_max=0.85)
    assert masks.negative[0, 1].tolist() == [True, True, False]  # "not foreground"
    assert masks.negative[0, 0].tolist() == [False, False, False]  # background is likely, never negative
    assert (masks.negative[0, 1] == (masks.class_confidence[0, 1] <= 0.1)).all()
    with pytest.raises(MedSegZooError, match="tau_min"):
        reliability_masks(views, views, tau_min=0.9, tau_max=0.85)


def test_prototypes_and_cosine_similarity() -> None:
    # 4 voxels, 2-d features; voxels 0,1 background (confident), 2,3 foreground (3 not confident)
    features = torch.tensor([[[1.0, 3.0, 0.0, 5.0], [0.0, 0.0, 2.0, 5.0]]])
    probs = torch.tensor([[[0.9, 0.9, 0.1, 0.4], [0.1, 0.1, 0.9, 0.6]]])
    confident = probs.max(dim=1).values >= 0.85
    protos = class_prototypes(features, probs, confident)
    assert torch.allclose(protos[0, 0], torch.tensor([1.0, 0.0]), atol=1e-5)  # mean (2, 0) normalised
    assert torch.allclose(protos[0, 1], torch.tensor([0.0, 1.0]), atol=1e-5)  # voxel 3 left out
    sims = prototype_similarity(features, protos)
    assert torch.allclose(sims[0, :, 3], torch.tensor([1 / math.sqrt(2)] * 2), atol=1e-5)
    assert torch.allclose(sims[0, :, 2], torch.tensor([0.0, 1.0]), atol=1e-5)


def test_perturbation_mask_is_one_connected_component() -> None:
    unreliable = torch.zeros(1, 16, 16, 16, dtype=torch.bool)
    unreliable[0, 2:4, 2:4, 2:4] = True  # small blob
    unreliable[0, 9:13, 9:13, 9:13] = True  # large blob, 8 voxels away from the small one
    mask = perturbation_mask(unreliable, dilation_iterations=1)[0].numpy()
    _, count = ndimage.label(mask)
    assert count == 1
    large = np.zeros((16, 16, 16), bool)
    large[9:13, 9:13, 9:13] = True
    assert (mask == ndimage.binary_dilation(large, iterations=1)).all()
    assert not mask[2, 2, 2]
    assert not perturbation_mask(torch.zeros(2, 8, 8, 8, dtype=torch.bool)).any()


def test_pseudo_label_loss_hand_computed() -> None:
    logits = torch.log(torch.tensor([[[0.8, 0.3, 0.5], [0.2, 0.7, 0.5]]]))  # probabilities already normalised
    target = torch.tensor([[1, 1, 0]])
    positive = torch.tensor([[True, True, False]])
    negative = torch.zeros(1, 2, 3, dtype=torch.bool)
    negative[0, 1, 2] = True  # voxel 2 is "not foreground"
    got = pseudo_label_loss(logits, target, positive, negative)
    expected = (-math.log(0.2) - math.log(0.7)) / 2 + (-math.log(1 - 0.5))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    empty = pseudo_label_loss(logits.requires_grad_(), target, positive & False, negative & False)
    assert empty.item() == 0.0 and empty.requires_grad


def test_calibration_loss_hand_computed() -> None:
    p1, p2 = two_class([0.8, 0.4]), two_class([0.6, 0.4])
    q1, q2 = two_class([0.8, 0.4]), two_class([0.4, 0.4])
    # per voxel: ||p1-p2||^2 = 2*0.2^2, ||q1-q2||^2 = 2*0.4^2, ||p1-q1|| = 0, ||p2-q2||^2 = 2*0.2^2 (voxel 0 only)
    expected = (2 * 0.04 + 2 * 0.16 + 0 + 2 * 0.04) / 2
    assert calibration_loss([p1, p2], [q1, q2]).item() == pytest.approx(expected)
    assert calibration_loss([p1, p2]).item() == pytest.approx(0.08 / 2)


def test_cutmix_and_mix_loss() -> None:
    xl = torch.zeros(2, 1, 2, 2)
    xu = torch.ones(2, 1, 2, 2)
    yl = torch.zeros(2, 1, 2, 2, dtype=torch.long)
    pseudo = torch.ones(2, 2, 2, dtype=torch.long)
    mask = torch.tensor([[[True, False], [False, False]], [[False, False], [False, True]]])
    image, label = reliability_cutmix(xl, yl, xu, pseudo, mask)
    assert image[:, 0].bool().equal(mask) and label.bool().equal(mask)
    logits = [torch.zeros(2, 2, 2, 2), torch.zeros(2, 2, 2, 2)]
    assert mix_loss(logits, [label, label]).item() == pytest.approx(math.log(2))
    box = random_box_mask((8, 6, 4), 0.5, torch.Generator().manual_seed(0))
    assert box.sum() == 4 * 3 * 2
    _, count = ndimage.label(box.numpy())
    assert count == 1


def test_sigmoid_rampup() -> None:
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(200, 100) == 1.0
    assert TCSegLoss(consistency_weight=2.0, rampup_iterations=100).unsupervised_weight(100) == 2.0


class _TinyDual(torch.nn.Module):
    """Two 1x1 conv 'decoders' over a shared 1x1 conv: the interface of DualDecoderVNet, tiny."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = torch.nn.Conv3d(1, 4, 1)
        self.heads = torch.nn.ModuleList([torch.nn.Conv3d(4, 2, 1), torch.nn.Conv3d(4, 2, 1)])

    def forward(self, x: torch.Tensor, return_all: bool = False):  # noqa: ANN201
        from medsegzoo.networks.vnet_dual import DualDecoderOutput

        f = torch.relu(self.enc(x))
        logits = tuple(h(f) for h in self.heads)
        return DualDecoderOutput(logits=logits, features=(f, f * 2)) if return_all else logits[0]


def test_total_loss_terms_and_switches() -> None:
    torch.manual_seed(0)
    net = _TinyDual()
    teacher = copy.deepcopy(net)
    xl, xu = torch.rand(2, 1, 6, 6, 6), torch.rand(2, 1, 6, 6, 6)
    y = (xl > 0.5).long()
    full = TCSegLoss(mix_start_iteration=0, rampup_iterations=10)
    out = full(net, teacher, xl, y, xu, iteration=10)
    total = out["sup"] + out["weight"] * (out["pse"] + out["cal"]) + out["mix"]
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    assert out["mix"].item() > 0 and out["cal"].item() > 0
    out["loss"].backward()
    assert all(p.grad is not None for p in net.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    sup = TCSegLoss(supervised_only=True)(net, None, xl, y, None, iteration=10)
    assert sup["loss"].item() == pytest.approx(sup["sup"].item())
    assert sup["loss"].item() == pytest.approx(out["sup"].item(), rel=1e-5)  # same labeled forward
    no_img = TCSegLoss(use_image_space=False, use_probability_space=False)(net, teacher, xl, y, xu, iteration=10)
    assert no_img["mix"].item() == 0.0 and no_img["pse"].item() == 0.0
    no_feat = TCSegLoss(use_feature_space=False, mix_start_iteration=10**9)(net, teacher, xl, y, xu, iteration=1)
    student = net(torch.cat([xl, xu]), return_all=True)
    p = [torch.softmax(lg, 1) for lg in student.logits]
    assert no_feat["cal"].item() == pytest.approx(calibration_loss(p).item(), rel=1e-5)
    with pytest.raises(MedSegZooError, match="unlabeled"):
        full(net, teacher, xl, y, torch.rand(0, 1, 6, 6, 6), iteration=1)


def test_threshold_errors_name_the_place() -> None:
    with pytest.raises(MedSegZooError, match="TCSegLoss: need 0 <= tau_min < tau_max"):
        TCSegLoss(tau_min=0.5, tau_max=0.4)
    with pytest.raises(MedSegZooError, match="TCSegLoss: tolerances"):
        TCSegLoss(tau=-0.1)
