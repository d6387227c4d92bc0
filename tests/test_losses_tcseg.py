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

from medsegzoo.errors import MedSegZooError
from medsegzoo.losses.reliability import (
    ReliabilityMasks,
    class_prototypes,
    decoder_disagreement,
    ensemble_confidence,
    largest_component,
    perturbation_mask,
    prototype_similarity,
    reliability_masks,
)
from medsegzoo.losses.tcseg import (
    RELEASE_CALIBRATION_WEIGHTS,
    TCSegLoss,
    box_cutmix,
    calibration_loss,
    centred_boxes,
    mix_loss,
    pseudo_label_loss,
    random_box_mask,
    random_boxes,
    reliability_cutmix,
    sigmoid_rampup,
)
from medsegzoo.networks.vnet_dual import DualDecoderOutput


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
    assert TCSegLoss(consistency_weight=2.0, rampup_iterations=100, rampup_step=1).unsupervised_weight(100) == 2.0


def test_rampup_is_the_release_staircase() -> None:
    # the released code evaluates sigmoid_rampup(t // 150, 40): constant over blocks of 150 iterations
    loss = TCSegLoss()  # rampup_iterations 6000, rampup_step 150
    assert loss.unsupervised_weight(1) == pytest.approx(math.exp(-5))
    assert loss.unsupervised_weight(149) == pytest.approx(math.exp(-5))
    assert loss.unsupervised_weight(150) == pytest.approx(math.exp(-5 * (1 - 1 / 40) ** 2))
    assert loss.unsupervised_weight(299) == pytest.approx(math.exp(-5 * (1 - 1 / 40) ** 2))
    assert loss.unsupervised_weight(3000) == pytest.approx(math.exp(-5 * 0.5**2))
    assert loss.unsupervised_weight(6000) == 1.0


class _TinyDual(torch.nn.Module):
    """Two 1x1 conv 'decoders' over a shared 1x1 conv: the interface of DualDecoderVNet, tiny."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = torch.nn.Conv3d(1, 4, 1)
        self.heads = torch.nn.ModuleList([torch.nn.Conv3d(4, 2, 1), torch.nn.Conv3d(4, 2, 1)])

    def forward(self, x: torch.Tensor, return_all: bool = False):  # noqa: ANN201
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
    assert full.sup_weight == 0.25  # the released code's (CE + Dice) / 4 per decoder
    total = 0.25 * out["sup"] + out["weight"] * (out["pse"] + out["cal"]) + out["mix"]
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    assert out["mix"].item() > 0 and out["cal"].item() > 0
    out["loss"].backward()
    assert all(p.grad is not None for p in net.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    sup = TCSegLoss(supervised_only=True)(net, None, xl, y, None, iteration=10)
    assert sup["loss"].item() == pytest.approx(sup["sup"].item())  # the baseline keeps weight 1
    same_dice = TCSegLoss(supervised_only=True, sup_dice="foreground_batch")(net, None, xl, y, None, iteration=10)
    assert same_dice["sup"].item() == pytest.approx(out["sup"].item(), rel=1e-5)  # same labeled forward
    no_img = TCSegLoss(use_image_space=False, use_probability_space=False)(net, teacher, xl, y, xu, iteration=10)
    assert no_img["mix"].item() == 0.0 and no_img["pse"].item() == 0.0
    no_feat = TCSegLoss(use_feature_space=False, mix_start_iteration=10**9)(net, teacher, xl, y, xu, iteration=1)
    student = net(torch.cat([xl, xu]), return_all=True)
    p = [torch.softmax(lg, 1) for lg in student.logits]
    expected_cal = calibration_loss(p, None, RELEASE_CALIBRATION_WEIGHTS, "mean")
    assert no_feat["cal"].item() == pytest.approx(expected_cal.item(), rel=1e-5)
    with pytest.raises(MedSegZooError, match="unlabeled"):
        full(net, teacher, xl, y, torch.rand(0, 1, 6, 6, 6), iteration=1)


def test_threshold_errors_name_the_place() -> None:
    with pytest.raises(MedSegZooError, match="TCSegLoss: need 0 <= tau_min < tau_max"):
        TCSegLoss(tau_min=0.5, tau_max=0.4)
    with pytest.raises(MedSegZooError, match="TCSegLoss: tolerances"):
        TCSegLoss(tau=-0.1)


def test_calibration_loss_release_weights_from_its_branch_loop() -> None:
    p1, p2 = two_class([0.8, 0.4]), two_class([0.6, 0.4])
    q1, q2 = two_class([0.8, 0.4]), two_class([0.4, 0.4])

    def mse(a: torch.Tensor, b: torch.Tensor) -> float:  # torch's mse_loss(reduction="mean") by hand
        return float(((a - b) ** 2).sum() / a.numel())

    # the released loop: branch 0 starts a running sum, branch 1 adds its own term; both add the sum
    running = mse(p1, p2) + mse(q1, q2) / 4 + mse(q1, p1) / 4
    total = running
    running += mse(q2, p2) / 4
    total += running
    assert total == pytest.approx(2 * 0.02 + 0.5 * 0.08 + 0.5 * 0.0 + 0.25 * 0.02)  # per-term means, by hand
    got = calibration_loss([p1, p2], [q1, q2], RELEASE_CALIBRATION_WEIGHTS, "mean")
    assert got.item() == pytest.approx(total)
    with pytest.raises(MedSegZooError, match="4 calibration weights"):
        calibration_loss([p1, p2], [q1, q2], (1.0, 1.0))
    with pytest.raises(MedSegZooError, match="reduction"):
        TCSegLoss(calibration_reduction="max")


def test_sup_term_is_the_release_foreground_batch_dice_plus_ce() -> None:
    torch.manual_seed(1)
    net = _TinyDual()
    xl, xu = torch.rand(2, 1, 5, 5, 5), torch.rand(2, 1, 5, 5, 5)
    y = (xl > 0.4).long()
    out = TCSegLoss(mix_start_iteration=10**6)(net, copy.deepcopy(net), xl, y, xu, iteration=1)
    expected = 0.0
    for logits in net(torch.cat([xl, xu]), return_all=True).logits:
        logits = logits[:2].detach()
        ce = torch.nn.functional.cross_entropy(logits, y[:, 0])
        fg, g = torch.softmax(logits, 1)[:, 1], (y[:, 0] == 1).float()
        dice = 1 - (2 * (fg * g).sum() + 1e-8) / (fg.sum() + g.sum() + 1e-8)  # one Dice over the whole batch
        expected += float(ce + dice)
    assert out["sup"].item() == pytest.approx(expected, rel=1e-5)
    per_sample = TCSegLoss(supervised_only=True)(net, None, xl, y, None, iteration=1)["sup"]
    assert per_sample.item() != pytest.approx(expected, rel=1e-3)  # MONAI's per-sample Dice with background differs


def test_perturbation_mask_release_closing_random_element_and_minimum() -> None:
    unreliable = torch.zeros(1, 12, 12, 12, dtype=torch.bool)
    unreliable[0, 3:8, 3:8, 3:8] = True
    unreliable[0, 5, 5, 5] = False  # a hole the 3^3 closing fills
    unreliable[0, 10, 10, 10] = True  # a speck away from the blob
    closed = perturbation_mask(unreliable, dilation_iterations=0, closing=True)[0]
    assert closed[5, 5, 5] and not closed[10, 10, 10]  # hole closed, speck dropped (not the largest component)
    assert not perturbation_mask(unreliable, dilation_iterations=0, min_voxels=200).any()  # 124 + 1 voxels < 200
    # the released dilation: one random element (side 1..7, each voxel kept with p 0.5), by hand with scipy
    draws = np.random.default_rng(3)
    side = int(draws.integers(1, 8))
    element = draws.random((side,) * 3) < 0.5
    sample = ndimage.binary_closing(unreliable[0].numpy(), structure=np.ones((3, 3, 3), bool))
    expected = largest_component(ndimage.binary_dilation(sample, structure=element))
    got = perturbation_mask(unreliable, closing=True, random_element_size=7, rng=np.random.default_rng(3))[0]
    assert (got.numpy() == expected).all()


def test_centred_and_random_boxes_by_hand() -> None:
    masks = torch.zeros(2, 20, 16, 8, dtype=torch.bool)
    masks[0, 8:13, 4:9, 2:5] = True  # centre (10, 6, 3)
    masks[1, 0:3, 13:16, 0:8] = True  # centre (1, 14, 3.5) -> truncated to (1, 14, 3)
    boxes = centred_boxes(masks, np.random.default_rng(0))
    draws = np.random.default_rng(0)
    for i, (cx, cy) in enumerate([(10, 6), (1, 14)]):
        lam = draws.beta(4, 4)
        hx, hy = int(lam * 20) // 2, int(lam * 16) // 2
        expected = torch.zeros(20, 16, 8, dtype=torch.bool)
        expected[max(0, cx - hx):min(20, cx + hx), max(0, cy - hy):min(16, cy + hy), :] = True  # whole third axis
        assert torch.equal(boxes[i], expected), i
    masks[1] = False
    assert centred_boxes(masks, np.random.default_rng(0)) is None  # an empty mask: the caller draws random boxes

    boxes = random_boxes((20, 16, 8), 2, np.random.default_rng(5))
    draws = np.random.default_rng(5)
    ratio = math.sqrt(1 - draws.beta(4, 4))  # one size for the batch
    for i in range(2):
        expected = torch.zeros(20, 16, 8, dtype=torch.bool)
        spans = []
        for size in (20, 16):
            half, centre = int(size * ratio) // 2, int(draws.integers(int(size / 8), size))
            assert int(size / 8) <= centre < size
            spans.append(slice(min(max(centre - half, 0), size), min(max(centre + half, 0), size)))
        expected[spans[0], spans[1], :] = True
        assert torch.equal(boxes[i], expected), i


def test_box_cutmix_is_bidirectional() -> None:
    xl, xu = torch.zeros(2, 1, 4, 4, 2), torch.ones(2, 1, 4, 4, 2)
    gt = torch.ones(2, 1, 4, 4, 2, dtype=torch.long)
    pseudo = torch.zeros(2, 4, 4, 2, dtype=torch.long)
    boxes = torch.zeros(2, 4, 4, 2, dtype=torch.bool)
    boxes[0, :2, :2] = True
    boxes[1, 2:, 2:] = True
    image, label = box_cutmix(xl, gt, xu, pseudo, boxes)
    # pair 0: labeled base, unlabeled content (and its pseudo-label) in the box
    assert torch.equal(image[0, 0].bool(), boxes[0]) and torch.equal(label[0].bool(), ~boxes[0])
    # pair 1: unlabeled base, labeled content (and its ground truth) in the box
    assert torch.equal(image[1, 0].bool(), ~boxes[1]) and torch.equal(label[1].bool(), boxes[1])


def _reliability(unreliable: torch.Tensor) -> ReliabilityMasks:
    """Reliability masks whose only meaningful field is ``unreliable``."""
    shape = unreliable.shape
    probs = torch.full((shape[0], 2, *shape[1:]), 0.5)
    return ReliabilityMasks(probs, probs[:, 0], ~unreliable, ~unreliable, torch.zeros_like(probs, dtype=torch.bool), unreliable)


def test_mix_alternates_reliability_box_and_random_box() -> None:
    unreliable = torch.zeros(2, 20, 16, 8, dtype=torch.bool)
    unreliable[:, 8:13, 4:9, 2:5] = True
    loss = TCSegLoss(mask_closing=False, dilation_element_size=None, dilation_iterations=0, min_mask_voxels=1, seed=0)
    boxes, used = loss.mix_boxes(_reliability(unreliable), 2, iteration=101)  # odd: around the mask centre
    assert used and torch.equal(boxes, centred_boxes(unreliable, np.random.default_rng(0)))
    boxes, used = loss.mix_boxes(_reliability(unreliable), 2, iteration=102)  # even: random box
    assert not used
    draws = np.random.default_rng(0)
    draws.beta(4, 4, size=2)  # what the odd iteration's two boxes used
    assert torch.equal(boxes, random_boxes((20, 16, 8), 2, draws))
    _, used = loss.mix_boxes(_reliability(torch.zeros_like(unreliable)), 2, iteration=103)
    assert not used  # nothing unreliable: random boxes, as the released code falls back
    # through the whole objective: odd iterations report the reliability box, even ones do not
    torch.manual_seed(0)
    net = _TinyDual()
    xl, xu = torch.rand(2, 1, 6, 6, 6), torch.rand(2, 1, 6, 6, 6)
    y = (xl > 0.5).long()
    full = TCSegLoss(mix_start_iteration=100, min_mask_voxels=1, seed=0)
    assert full(net, copy.deepcopy(net), xl, y, xu, iteration=100)["mix"].item() == 0.0  # mixing starts after 100
    assert full(net, copy.deepcopy(net), xl, y, xu, iteration=101)["reliability_box"].item() == 1.0
    assert full(net, copy.deepcopy(net), xl, y, xu, iteration=102)["reliability_box"].item() == 0.0
