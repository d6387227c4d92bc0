"""TCT / TAL / ME losses against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from medsegzoo.errors import MedSegZooError, UnknownNameError
from medsegzoo.losses import (
    AuxiliaryDiceLoss,
    ConsistencyLoss,
    ExclusionDiceLoss,
    MarginalDiceLoss,
    MarginalExclusionLoss,
    TCTLoss,
    consistency_keep_mask,
    merge_unlabeled_into_background,
    sigmoid_rampup,
)
from medsegzoo.losses.tct import ExclusionCrossEntropyLoss, MarginalCrossEntropyLoss


def _logits_of(probs: list[list[float]], dim: int = 1) -> torch.Tensor:
    """Logits whose softmax over ``dim`` are the given probabilities: (1, C, V, 1, 1)."""
    p = torch.tensor(probs, dtype=torch.float64).T  # (C, V)
    return torch.log(p)[None, :, :, None, None]


def test_merge_unlabeled_into_background_hand_values():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])[None, :, None, None, None]
    q = merge_unlabeled_into_background(probs, torch.tensor([[1.0, 0.0, 1.0]]))
    assert torch.allclose(q.flatten(), torch.tensor([0.4, 0.2, 0.0, 0.4]))
    # fully labeled: unchanged; nothing labeled: everything is background
    assert torch.allclose(merge_unlabeled_into_background(probs, torch.ones(1, 3)), probs)
    assert torch.allclose(merge_unlabeled_into_background(probs, torch.zeros(1, 3)).flatten(), torch.tensor([1.0, 0, 0, 0]))
    with pytest.raises(MedSegZooError, match="shape"):
        merge_unlabeled_into_background(probs, torch.ones(1, 2))


def test_marginal_dice_hand_values():
    # 2 voxels, N = 2 classes, the sample is labeled for class 1 only
    logits = _logits_of([[0.5, 0.3, 0.2], [0.2, 0.6, 0.2]])
    label = torch.tensor([1, 0])[None, None, :, None, None]
    loss = MarginalDiceLoss(2)(logits, label, torch.tensor([[1.0, 0.0]]))
    # q = [[0.7, 0.3], [0.4, 0.6]] over {0, 1}; y0 = [0, 1], y1 = [1, 0]
    d0 = 2 * 0.4 / (1.1 + 1)
    d1 = 2 * 0.3 / (0.9 + 1)
    assert loss.item() == pytest.approx(1 - (d0 + d1) / 2, abs=1e-5)
    # the unlabeled class's probability (0.2 at voxel 1) is not punished as false positive:
    # a plain softmax Dice over both channels {0, 1} with class 2 ignored would differ
    plain = 1 - (2 * 0.2 / (0.7 + 1) + d1) / 2
    assert abs(loss.item() - plain) > 0.05


def test_marginal_dice_averages_labeled_channels_per_sample():
    # sample 0 labeled {1}, sample 1 labeled {1, 2}: channel counts 2 and 3
    probs = [[0.5, 0.3, 0.2], [0.2, 0.6, 0.2]]
    logits = torch.cat([_logits_of(probs), _logits_of(probs)])
    label = torch.tensor([[1, 0], [1, 2]])[:, None, :, None, None]
    labeled = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    loss = MarginalDiceLoss(2)(logits, label, labeled)
    s0 = 1 - (2 * 0.4 / 2.1 + 2 * 0.3 / 1.9) / 2
    # sample 1: q = p; y0 empty, y1 = [1, 0], y2 = [0, 1]
    d0 = (0 + 1e-5) / (0.7 + 1e-5)
    s1 = 1 - (d0 + 2 * 0.3 / 1.9 + 2 * 0.2 / 1.4) / 3
    assert loss.item() == pytest.approx((s0 + s1) / 2, abs=1e-4)


def test_auxiliary_dice_merges_other_labeled_classes_and_skips_unlabeled_tasks():
    # N = 2; sample labeled for both; ATH 0 (class 1) and ATH 1 (class 2); 2 voxels
    label = torch.tensor([1, 2])[None, None, :, None, None]
    g0 = [[0.2, 0.8], [0.6, 0.4]]  # ATH for class 1: voxel 0 is class 1, voxel 1 (class 2) is "background"
    g1 = [[0.9, 0.1], [0.3, 0.7]]
    aux = torch.stack([_logits_of(g0), _logits_of(g1)], dim=1)  # (1, 2, 2, V, 1, 1)
    per_task = AuxiliaryDiceLoss(2).per_task(aux, label, torch.tensor([[1.0, 1.0]]))
    t0 = 1 - (2 * 0.6 / (0.8 + 1) + 2 * 0.8 / (1.2 + 1)) / 2
    t1 = 1 - (2 * 0.9 / (1.2 + 1) + 2 * 0.7 / (0.8 + 1)) / 2
    assert per_task.flatten().tolist() == pytest.approx([t0, t1], abs=1e-5)
    # labeled for class 1 only: ATH 1 gets no supervision, eq. 3 sums the labeled tasks
    only = AuxiliaryDiceLoss(2)(aux, torch.tensor([1, 0])[None, None, :, None, None], torch.tensor([[1.0, 0.0]]))
    assert only.item() == pytest.approx(t0, abs=1e-5)


def test_consistency_keep_mask_rules():
    iou = torch.tensor([[0.9, 0.1, 0.2, 0.7, 0.3], [0.5, 0.5, 0.8, 0.0, 0.6]])
    med = consistency_keep_mask(iou, "task_median")
    assert med.tolist() == [[True, False, False, True, True], [True, True, True, False, True]]
    mean = consistency_keep_mask(iou, "task_mean")  # means 0.44 and 0.48
    assert mean.tolist() == [[True, False, False, True, False], [True, True, True, False, True]]
    batch = consistency_keep_mask(iou, "batch_mean")  # per head: 0.7, 0.3, 0.5, 0.35, 0.45
    assert batch.tolist() == [[True, False, False, True, False], [False, True, True, False, True]]
    fixed = consistency_keep_mask(iou, "fixed", 0.5)
    assert fixed.tolist() == [[True, False, False, True, False], [True, True, True, False, True]]
    assert consistency_keep_mask(iou, "none").all()
    # even number of heads: the true median (mean of the two middle values)
    assert consistency_keep_mask(torch.tensor([[0.1, 0.4, 0.6, 0.9]]), "task_median").tolist() == [[False, False, True, True]]
    with pytest.raises(UnknownNameError, match="task_median"):
        consistency_keep_mask(iou, "median")


def _consistency_case() -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """N = 3 heads over 4 voxels: IoUs 1, 0.5 and 0 between main head and ATH."""
    main_p = torch.tensor(
        [  # channels 0..3 per voxel
            [0.1, 0.8, 0.05, 0.05],
            [0.1, 0.7, 0.1, 0.1],
            [0.2, 0.1, 0.6, 0.1],
            [0.3, 0.1, 0.0 + 0.2, 0.4],
        ]
    )
    aux_fg = torch.tensor(  # ATH j foreground probability per voxel
        [
            [0.9, 0.6, 0.3, 0.2],  # head 0 (class 1): main >0.5 at v0, v1; ATH at v0, v1 -> IoU 1
            [0.2, 0.3, 0.9, 0.8],  # head 1 (class 2): main at v2; ATH at v2, v3 -> IoU 0.5
            [0.7, 0.1, 0.1, 0.1],  # head 2 (class 3): main none (0.4 max); ATH at v0 -> IoU 0
        ]
    )
    main_logits = torch.log(main_p.T)[None, :, :, None, None]
    aux_logits = torch.log(torch.stack([1 - aux_fg, aux_fg], dim=1))[None, :, :, :, None, None]
    mse = [(((main_p[:, j + 1] - aux_fg[j]) ** 2).mean()).item() for j in range(3)]
    return main_logits, aux_logits, mse


def test_consistency_loss_filters_low_iou_heads():
    main_logits, aux_logits, mse = _consistency_case()
    loss_fn = ConsistencyLoss("task_median")
    terms, iou = loss_fn.terms(main_logits, aux_logits)
    assert iou.flatten().tolist() == pytest.approx([1.0, 0.5, 0.0])
    # the two-channel MSE of eq. 6 equals the per-voxel foreground MSE
    assert terms.flatten().tolist() == pytest.approx(mse, rel=1e-5)
    loss, keep = loss_fn(main_logits, aux_logits)
    assert keep.flatten().tolist() == [True, True, False]  # median 0.5 drops head 2
    assert loss.item() == pytest.approx(mse[0] + mse[1], rel=1e-5)
    loss_all, _ = ConsistencyLoss("none")(main_logits, aux_logits)
    assert loss_all.item() == pytest.approx(sum(mse), rel=1e-5)
    # only unlabeled classes: sample labeled for class 1 -> heads 1 (and 2 filtered)
    loss_unl, keep_unl = ConsistencyLoss("task_median", classes="unlabeled")(main_logits, aux_logits, torch.tensor([[1.0, 0.0, 0.0]]))
    assert keep_unl.flatten().tolist() == [False, True, False]
    assert loss_unl.item() == pytest.approx(mse[1], rel=1e-5)


def test_consistency_gradient_detach_option():
    main_logits, aux_logits, _ = _consistency_case()
    main = main_logits.clone().requires_grad_(True)
    aux = aux_logits.clone().requires_grad_(True)
    ConsistencyLoss("none", detach_aux=True)(main, aux)[0].backward()
    assert aux.grad is None and main.grad.abs().sum() > 0
    aux2 = aux_logits.clone().requires_grad_(True)
    ConsistencyLoss("none")(main_logits, aux2)[0].backward()
    assert aux2.grad.abs().sum() > 0


def test_exclusion_and_me_hand_values():
    # N = 2, labeled for class 1; class 2 unlabeled; voxel 0 is class 1, voxel 1 background
    logits = _logits_of([[0.5, 0.3, 0.2], [0.2, 0.6, 0.2]])
    label = torch.tensor([1, 0])[None, None, :, None, None]
    labeled = torch.tensor([[1.0, 0.0]])
    exc = ExclusionDiceLoss()(logits, label, labeled)
    # p2 = [0.2, 0.2], organs = [1, 0]: 2 * 0.2 / (0.4 + 1)
    assert exc.item() == pytest.approx(0.4 / 1.4, abs=1e-5)
    me = MarginalExclusionLoss(2, exclusion_weight=2.0, cross_entropy=False)(logits, label, labeled)
    assert me.item() == pytest.approx(MarginalDiceLoss(2)(logits, label, labeled).item() + 2 * 0.4 / 1.4, abs=1e-5)
    # fully labeled sample: nothing to exclude
    assert ExclusionDiceLoss()(logits, label, torch.ones(1, 2)).item() == 0.0


def test_me_cross_entropy_terms_hand_values():
    # the case above: voxel 0 is class 1 (p = 0.5, 0.3, 0.2), voxel 1 background (p = 0.2, 0.6, 0.2)
    logits = _logits_of([[0.5, 0.3, 0.2], [0.2, 0.6, 0.2]])
    label = torch.tensor([1, 0])[None, None, :, None, None]
    labeled = torch.tensor([[1.0, 0.0]])
    # marginal CE: class 2 is merged into background -> q = (0.7, 0.3) and (0.4, 0.6); targets 1 and 0
    marginal_ce = (-math.log(0.3) - math.log(0.2 + 0.2)) / 2
    assert MarginalCrossEntropyLoss()(logits, label, labeled).item() == pytest.approx(marginal_ce, rel=1e-6)
    # exclusion CE: class 2's exclusion label is the labeled organ (voxel 0): mean of e log(p2 + 1)
    exclusion_ce = (math.log(0.2 + 1.0) + 0.0) / 2
    assert ExclusionCrossEntropyLoss()(logits, label, labeled).item() == pytest.approx(exclusion_ce, rel=1e-6)
    assert ExclusionCrossEntropyLoss()(logits, label, torch.ones(1, 2)).item() == 0.0  # nothing unlabeled
    # Shi et al.'s ME: (marginal Dice + marginal CE) + w (exclusion Dice + exclusion CE)
    dice = MarginalDiceLoss(2)(logits, label, labeled).item()
    me = MarginalExclusionLoss(2, exclusion_weight=2.0)(logits, label, labeled)
    assert me.item() == pytest.approx(dice + marginal_ce + 2 * (0.4 / 1.4 + exclusion_ce), rel=1e-5)
    out = TCTLoss(2, method="me", exclusion_weight=2.0)(logits, label, labeled)
    assert set(out) >= {"main", "marginal_ce", "exclusion", "exclusion_ce"}
    assert out["loss"].item() == pytest.approx(me.item(), rel=1e-6)
    dice_only = TCTLoss(2, method="me", me_cross_entropy=False)(logits, label, labeled)
    assert dice_only["loss"].item() == pytest.approx(dice + 0.4 / 1.4, rel=1e-5) and "marginal_ce" not in dice_only
    # a vanishing probability keeps the marginal CE finite (log-sum-exp of the merged background)
    extreme = torch.tensor([[-200.0, 50.0], [0.0, 0.0], [-200.0, 0.0]])[None, :, :, None, None]
    assert torch.isfinite(MarginalCrossEntropyLoss()(extreme, torch.zeros_like(label), labeled))
    with pytest.raises(MedSegZooError, match="epsilon"):
        ExclusionCrossEntropyLoss(0.0)


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(10, 10) == 1.0 and sigmoid_rampup(25, 10) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0


def _tct_inputs(batch: int = 2, n: int = 3, size: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    outputs = {
        "main": torch.randn(batch, n + 1, size, size, size, generator=gen),
        "aux": torch.randn(batch, n, 2, size, size, size, generator=gen),
    }
    label = torch.randint(0, n + 1, (batch, 1, size, size, size), generator=gen)
    labeled = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])[:batch]
    label[0][label[0] > 1] = 0  # sample 0 only labels class 1
    label[1][label[1] == 1] = 0
    return outputs, label, labeled


def test_uauwl_gradient_reaches_both_sigmas_with_hand_value():
    outputs, label, labeled = _tct_inputs()
    loss_fn = TCTLoss(3, method="tct", weighting="uauwl", rampup_epochs=10)
    assert [p.numel() for p in loss_fn.parameters()] == [1, 1]
    out = loss_fn(outputs, label, labeled, epoch=10)
    l_main, l_aux, l_con = out["main"].item(), out["aux"].item(), out["con"].item()
    # sigma = 1 at the start: total = L_main + L_aux + 0 + 0 + w(t) L_con with w(10) = 1
    assert out["loss"].item() == pytest.approx(l_main + l_aux + l_con, rel=1e-5)
    out["loss"].backward()
    # d/d(log s) of L exp(-2 log s) + log s at log s = 0 is 1 - 2 L
    assert loss_fn.log_sigma_main.grad.item() == pytest.approx(1 - 2 * l_main, rel=1e-5)
    assert loss_fn.log_sigma_aux.grad.item() == pytest.approx(1 - 2 * l_aux, rel=1e-5)


def test_tct_loss_variants():
    outputs, label, labeled = _tct_inputs()
    uwl = TCTLoss(3, weighting="uwl")
    assert uwl.log_sigma_aux.numel() == 3  # one uncertainty per auxiliary task
    out = uwl(outputs, label, labeled, epoch=0)
    out["loss"].backward()
    assert uwl.log_sigma_aux.grad.abs().min() > 0
    fixed = TCTLoss(3, weighting="fixed", aux_weight=0.5, consistency=False)
    assert list(fixed.parameters()) == []
    out = fixed(outputs, label, labeled)
    assert out["loss"].item() == pytest.approx(out["main"].item() + 0.5 * out["aux"].item(), rel=1e-6)
    assert "con" not in out
    # ramp-up: w(0) = exp(-5) of the maximum
    ramp = TCTLoss(3, weighting="fixed", consistency_weight=2.0, rampup_epochs=4)(outputs, label, labeled, epoch=0)
    assert ramp["con_weight"].item() == pytest.approx(2 * math.exp(-5))
    assert ramp["loss"].item() == pytest.approx(
        ramp["main"].item() + ramp["aux"].item() + 2 * math.exp(-5) * ramp["con"].item(), rel=1e-5
    )
    # baselines use the main logits only
    tal = TCTLoss(3, method="tal")(outputs["main"], label, labeled)
    assert tal["loss"].item() == pytest.approx(MarginalDiceLoss(3)(outputs["main"], label, labeled).item())
    me = TCTLoss(3, method="me")(outputs, label, labeled)
    expected = me["main"] + me["marginal_ce"] + me["exclusion"] + me["exclusion_ce"]
    assert me["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(MedSegZooError, match="aux_heads=True"):
        TCTLoss(3)(outputs["main"], label, labeled)
    with pytest.raises(UnknownNameError, match="tct, tal, me"):
        TCTLoss(3, method="pfl")
