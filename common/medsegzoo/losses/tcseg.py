"""TCSeg's tri-space calibrated objective (paper 004, sections 3.3-3.4; REFERENCE.md section 4).

Terms, each a function tested on hand-made tensors, and :class:`TCSegLoss`, which runs one
training step's worth of them on a student (:class:`~medsegzoo.networks.DualDecoderVNet`) and
its EMA teacher:

* ``L_sup`` (eq. 20): Dice + cross-entropy on the labeled images, for each decoder. The
  released code uses a foreground Dice over the whole batch and divides each decoder's
  ``CE + Dice`` by 4 (``sup_weight`` 0.25).
* ``L_pse`` (eq. 14, 21): probability space. Each student decoder learns from its peer's
  hard pseudo-label on the positive (C+U-) voxels, plus the complementary-label loss
  ``-log(1 - p_k)`` on the negative (voxel, class) pairs; each part is averaged over its
  mask (zero when the mask is empty).
* ``L_cal`` (eq. 15): feature space. Distances between the two decoders' probabilities,
  between their prototype similarity maps, and between each decoder's probabilities and its
  own prototype map. The paper sums squared differences over classes with weight 1 each; the
  released code takes means over classes too and, because its loop over the two branches adds
  a running sum twice, weights the four terms 2, 1/2, 1/2 and 1/4
  (:data:`RELEASE_CALIBRATION_WEIGHTS`).
* ``L_mix`` (eq. 17-19, 22): image space. The released code alternates two CutMix kinds: on
  odd iterations a box around the centre of the perturbation mask (dilated unreliable region,
  largest component), on even ones a random box; the labeled image of pair 0 gets unlabeled
  content in the box and the unlabeled image of pair 1 gets labeled content (bidirectional).
  The paper's eq. 17 (paste the unlabeled image over the mask itself) is ``mix_mode="mask"``.
  Targets: ground truth for labeled content, teacher pseudo-labels for unlabeled content;
  decoder b is supervised by the mix built from teacher decoder 1-b.

Total (eq. 23 with the usual mean-teacher ramp-up): ``sup_weight * L_sup + w(t) * (L_pse +
L_cal) + mix_weight * L_mix`` with ``w(t) = consistency_weight * exp(-5 (1 - t/T)^2)``
(Laine & Aila's sigmoid ramp-up; the released code evaluates it at ``150 * (t // 150)`` with
``T = 40 x 150 = 6000`` iterations). Choices the paper leaves open, and what this module does,
are listed in the bundle README and ``docs/fidelity.md (TCSeg)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.losses import DiceCELoss
from torch import nn
from torch.nn import functional as F

from medsegzoo.errors import MedSegZooError
from medsegzoo.losses.reliability import (
    ReliabilityMasks,
    check_thresholds,
    class_prototypes,
    perturbation_mask,
    prototype_similarity,
    reliability_masks,
)
from medsegzoo.losses.tct import sigmoid_rampup  # the same Laine & Aila ramp-up TCT uses

__all__ = [
    "CALIBRATION_REDUCTIONS",
    "MIX_MODES",
    "RELEASE_CALIBRATION_WEIGHTS",
    "SUP_DICE_KINDS",
    "TCSegLoss",
    "box_cutmix",
    "calibration_loss",
    "centred_boxes",
    "mix_loss",
    "pseudo_label_loss",
    "random_box_mask",
    "random_boxes",
    "reliability_cutmix",
    "sigmoid_rampup",
]

# the released code's effective weights of (p1-p2, q1-q2, p1-q1, p2-q2): its running sum of the
# calibration terms is added once per branch, so the terms of branch 0 count twice
RELEASE_CALIBRATION_WEIGHTS = (2.0, 0.5, 0.5, 0.25)
CALIBRATION_REDUCTIONS = ("sum", "mean")
MIX_MODES = ("alternate", "mask")
SUP_DICE_KINDS = ("foreground_batch", "per_sample")


def pseudo_label_loss(
    logits: torch.Tensor, pseudo_label: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
) -> torch.Tensor:
    """Positive cross-entropy plus complementary-label cross-entropy (TCSeg eq. 14/21).

    Args:
        logits: ``(B, C, *spatial)`` the learning decoder's logits.
        pseudo_label: ``(B, *spatial)`` integer hard labels from the peer decoder.
        positive: ``(B, *spatial)`` bool voxels with a positive pseudo-label.
        negative: ``(B, C, *spatial)`` bool (voxel, class) pairs labeled "not this class".

    Returns:
        Scalar: mean CE over positive voxels + mean ``-log(1 - p_k)`` over negative pairs
        (each part 0 when its mask is empty, keeping the graph connected).
    """
    zero = logits.sum() * 0.0
    loss = zero
    if positive.any():
        loss = loss + F.cross_entropy(logits, pseudo_label.long(), reduction="none")[positive].mean()
    if negative.any():
        complement = (1.0 - torch.softmax(logits, dim=1)).clamp(min=1e-6)
        loss = loss + (-torch.log(complement))[negative].mean()
    return loss


def _check_calibration(weights: Sequence[float], reduction: str, where: str) -> None:
    """Raise unless there are four weights and a known reduction."""
    if len(weights) != 4:
        raise MedSegZooError(f"{where}: need 4 calibration weights (p1-p2, q1-q2, p1-q1, p2-q2), got {list(weights)}")
    if reduction not in CALIBRATION_REDUCTIONS:
        raise MedSegZooError(f"{where}: calibration reduction must be one of {CALIBRATION_REDUCTIONS}, got {reduction!r}")


def calibration_loss(
    probabilities: Sequence[torch.Tensor],
    similarities: Sequence[torch.Tensor] | None = None,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    reduction: str = "sum",
) -> torch.Tensor:
    """Feature-space calibration (TCSeg eq. 15), averaged over voxels and batch.

    Args:
        probabilities: the two decoders' probabilities ``(B, C, *spatial)``.
        similarities: the two decoders' prototype similarity maps, or None ("w/o feat."
            ablation: only the probability agreement term remains).
        weights: weights of the terms ``(p1-p2, q1-q2, p1-q1, p2-q2)``; the paper's are all 1,
            the released code's are :data:`RELEASE_CALIBRATION_WEIGHTS`.
        reduction: ``"sum"`` over the class axis (eq. 15's squared norm) or ``"mean"`` over it
            (``torch.nn.functional.mse_loss``, as the released code).

    Returns:
        Scalar ``mean_v [w0 d(p1, p2) + w1 d(q1, q2) + w2 d(p1, q1) + w3 d(p2, q2)]``.

    Raises:
        MedSegZooError: not four weights, or an unknown reduction.
    """
    _check_calibration(weights, reduction, "calibration_loss")

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        squared = (a - b).pow(2)
        return squared.sum(dim=1).mean() if reduction == "sum" else squared.mean()

    p1, p2 = probabilities
    loss = weights[0] * distance(p1, p2)
    if similarities is not None:
        q1, q2 = similarities
        loss = loss + weights[1] * distance(q1, q2) + weights[2] * distance(p1, q1) + weights[3] * distance(p2, q2)
    return loss


def random_box_mask(shape: Sequence[int], fraction: float = 0.5, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """A bool mask with one random box whose sides are ``fraction`` of each spatial size.

    Args:
        shape: spatial shape.
        fraction: box side relative to the volume side, in (0, 1].
        generator: random source (the global one if None).
        device: device of the result.

    Returns:
        Bool tensor of ``shape``.
    """
    mask = torch.zeros(tuple(shape), dtype=torch.bool, device=device)
    slices = []
    for size in shape:
        side = max(1, int(round(size * fraction)))
        start = int(torch.randint(0, size - side + 1, (1,), generator=generator).item())
        slices.append(slice(start, start + side))
    mask[tuple(slices)] = True
    return mask


def reliability_cutmix(
    labeled_image: torch.Tensor,
    label: torch.Tensor,
    unlabeled_image: torch.Tensor,
    pseudo_label: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste unlabeled content over the perturbation mask (TCSeg eq. 17-18).

    Labeled sample i is paired with unlabeled sample ``i % B_u``.

    Args:
        labeled_image: ``(B_l, ch, *spatial)``.
        label: ``(B_l, 1, *spatial)`` or ``(B_l, *spatial)`` ground truth.
        unlabeled_image: ``(B_u, ch, *spatial)``.
        pseudo_label: ``(B_u, *spatial)`` the teacher's hard labels.
        mask: ``(B_u, *spatial)`` bool perturbation masks (of the unlabeled samples).

    Returns:
        ``(mixed_image (B_l, ch, *spatial), mixed_label (B_l, *spatial) long)``.
    """
    pair = torch.arange(labeled_image.shape[0], device=labeled_image.device) % unlabeled_image.shape[0]
    m = mask[pair]
    image = torch.where(m.unsqueeze(1), unlabeled_image[pair], labeled_image)
    target = label[:, 0] if label.ndim == labeled_image.ndim else label
    mixed_label = torch.where(m, pseudo_label[pair].long(), target.long())
    return image, mixed_label


def _box_slices(shape: Sequence[int], starts: Sequence[int], stops: Sequence[int]) -> tuple[slice, ...]:
    """Slices of a box over the first two spatial axes; every further axis is taken whole."""
    boxed = [slice(int(a), int(b)) for a, b in zip(starts, stops)]
    return tuple(boxed + [slice(None)] * (len(shape) - len(boxed)))


def random_boxes(
    shape: Sequence[int], count: int, rng: np.random.Generator, beta: float = 4.0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Random CutMix boxes as the released code draws them (its ``rand_bbox``).

    One ``lam ~ Beta(beta, beta)`` for the batch; per sample, on each of the first two spatial
    axes, a side ``int(size * sqrt(1 - lam))`` around a centre drawn uniformly from
    ``[int(size / 8), size)``, clipped to the volume; the box spans every further axis whole.

    Args:
        shape: spatial shape.
        count: number of boxes (one per mixed sample).
        rng: random source.
        beta: parameter of the Beta distribution (4 in the released code).
        device: device of the result.

    Returns:
        Bool tensor ``(count, *shape)``.
    """
    ratio = math.sqrt(1.0 - float(rng.beta(beta, beta)))
    boxes = torch.zeros((count, *shape), dtype=torch.bool, device=device)
    for i in range(count):
        starts, stops = [], []
        for size in shape[:2]:
            half = int(size * ratio) // 2
            centre = int(rng.integers(int(size / 8), size))
            starts.append(min(max(centre - half, 0), size))
            stops.append(min(max(centre + half, 0), size))
        boxes[(i, *_box_slices(shape, starts, stops))] = True
    return boxes


def centred_boxes(masks: torch.Tensor, rng: np.random.Generator, beta: float = 4.0) -> torch.Tensor | None:
    """Boxes around the centres of perturbation masks, as the released code's reliability mix.

    Per sample ``lam ~ Beta(beta, beta)``; on each of the first two spatial axes a box of side
    ``int(lam * size)`` (``side // 2`` either way) around the mask's mean voxel position
    (truncated to an integer), clipped to the volume; every further axis whole.

    Args:
        masks: ``(B, *spatial)`` bool perturbation masks.
        rng: random source.
        beta: parameter of the Beta distribution (4 in the released code).

    Returns:
        Bool tensor of the masks' shape, or None when a mask is empty (the released code then
        uses random boxes for the whole batch).
    """
    boxes = torch.zeros_like(masks, dtype=torch.bool)
    shape = masks.shape[1:]
    for i, mask in enumerate(masks):
        coords = torch.nonzero(mask)
        if coords.numel() == 0:
            return None
        centre = coords.float().mean(dim=0).to(torch.int64).tolist()
        lam = float(rng.beta(beta, beta))
        starts, stops = [], []
        for axis, size in enumerate(shape[:2]):
            half = int(lam * size) // 2
            starts.append(max(0, centre[axis] - half))
            stops.append(min(size, centre[axis] + half))
        boxes[(i, *_box_slices(shape, starts, stops))] = True
    return boxes


def box_cutmix(
    labeled_image: torch.Tensor,
    label: torch.Tensor,
    unlabeled_image: torch.Tensor,
    pseudo_label: torch.Tensor,
    boxes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The released code's bidirectional CutMix over boxes.

    Mixed sample i pairs labeled sample i with unlabeled sample ``i % B_u``: for even i the
    labeled image is the base and the unlabeled content fills the box; for odd i the unlabeled
    image is the base and the labeled content fills the box. Labeled content carries the
    ground truth, unlabeled content the teacher's pseudo-label.

    Args:
        labeled_image: ``(B_l, ch, *spatial)``.
        label: ``(B_l, 1, *spatial)`` or ``(B_l, *spatial)`` ground truth.
        unlabeled_image: ``(B_u, ch, *spatial)``.
        pseudo_label: ``(B_u, *spatial)`` the teacher's hard labels.
        boxes: ``(B_l, *spatial)`` bool, one box per mixed sample.

    Returns:
        ``(mixed_image (B_l, ch, *spatial), mixed_label (B_l, *spatial) long)``.
    """
    n_labeled = labeled_image.shape[0]
    pair = torch.arange(n_labeled, device=labeled_image.device) % unlabeled_image.shape[0]
    target = (label[:, 0] if label.ndim == labeled_image.ndim else label).long()
    pseudo = pseudo_label[pair].long()
    unlabeled = unlabeled_image[pair]
    # odd samples swap roles: unlabeled base, labeled content in the box
    unlabeled_inside = (torch.arange(n_labeled, device=labeled_image.device) % 2 == 0).view(-1, *[1] * (boxes.ndim - 1))
    from_unlabeled = torch.where(unlabeled_inside, boxes, ~boxes)
    image = torch.where(from_unlabeled.unsqueeze(1), unlabeled, labeled_image)
    mixed_label = torch.where(from_unlabeled, pseudo, target)
    return image, mixed_label


def mix_loss(logits: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of decoder b on the mixed target from teacher decoder 1-b, mean over b (eq. 22)."""
    return torch.stack([F.cross_entropy(lg, targets[1 - b]) for b, lg in enumerate(logits)]).mean()


class TCSegLoss(nn.Module):
    """One TCSeg training step's objective (a callable object the semi-supervised trainer uses).

    Defaults are the released code's where it and the paper differ (docs/fidelity.md (TCSeg)).

    Args:
        tau: probability-space consistency tolerance (paper code: 0.05).
        tau_feature: prototype-space tolerance (paper code: ``2 * tau`` = 0.1).
        tau_min: negative-label confidence bound (0.1).
        tau_max: positive-label confidence bound (0.85).
        prototype_confidence: a voxel enters its decoder's prototypes when its maximum class
            probability reaches this (default: ``tau_max``).
        consistency_weight: final weight of ``L_pse + L_cal``.
        rampup_iterations: length of the sigmoid ramp-up of that weight (6000 as in the code).
        rampup_step: the ramp-up is evaluated at ``rampup_step * (t // rampup_step)`` (the
            released code: 150, a staircase); 1 for a smooth ramp.
        sup_weight: weight of ``L_sup`` (the sum over both decoders of CE + Dice). None: 0.25,
            the released code's division by 4, or 1 for ``supervised_only`` (a baseline the
            release does not contain).
        sup_dice: ``"foreground_batch"`` (the released code's Dice: foreground classes, the
            batch as one volume, smoothing 1e-8) or ``"per_sample"`` (MONAI's default: every
            class, per sample, smoothing 1e-5). None: foreground_batch, or per_sample for
            ``supervised_only``.
        calibration_weights: weights of ``L_cal``'s terms ``(p1-p2, q1-q2, p1-q1, p2-q2)``.
        calibration_reduction: ``"mean"`` over classes (released code) or ``"sum"`` (eq. 15).
        mix_weight: weight of ``L_mix``.
        mix_start_iteration: ``L_mix`` is used from the iteration after this one (released
            code: after 100), when the teacher's pseudo-labels are no longer noise.
        mix_mode: ``"alternate"`` (released code: reliability box on odd iterations, random box
            on even ones, bidirectional) or ``"mask"`` (eq. 17: the unlabeled image pasted over
            the perturbation mask itself).
        box_beta: Beta(box_beta, box_beta) draws the box size (4 in the released code).
        mask_closing: close the unreliable region with a 3^3 cube before dilating it (released code).
        dilation_element_size: dilate with one random element of side 1..this (released code: 7);
            None to dilate ``dilation_iterations`` times with the face-connected element.
        dilation_iterations: dilation steps when ``dilation_element_size`` is None.
        min_mask_voxels: a perturbation mask smaller than this counts as empty (released code: 100).
        fallback_box_fraction: ``mix_mode="mask"`` only: box side (fraction of the patch) used
            when a sample's perturbation mask is empty.
        seed: seed of the mixing's random source; None seeds it from numpy's global state
            (which ``monai.utils.set_determinism`` seeds).
        supervised_only: the "Only sup" baseline: ``L_sup`` only, no teacher, no unlabeled data.
        use_confidence: False -> "w/o C(v)" ablation.
        use_uncertainty: False -> "w/o U(v)" ablation.
        use_probability_space: False -> "w/o prob." (no ``L_pse``).
        use_feature_space: False -> "w/o feat." (no prototypes: no prototype uncertainty, no
            prototype terms in ``L_cal``).
        use_image_space: False -> "w/o img." (no ``L_mix``).

    Raises:
        MedSegZooError: thresholds out of order, or an unknown mode/kind/reduction.
    """

    def __init__(
        self,
        tau: float = 0.05,
        tau_feature: float = 0.1,
        tau_min: float = 0.1,
        tau_max: float = 0.85,
        prototype_confidence: float | None = None,
        consistency_weight: float = 1.0,
        rampup_iterations: int = 6000,
        rampup_step: int = 150,
        sup_weight: float | None = None,
        sup_dice: str | None = None,
        calibration_weights: Sequence[float] = RELEASE_CALIBRATION_WEIGHTS,
        calibration_reduction: str = "mean",
        mix_weight: float = 1.0,
        mix_start_iteration: int = 100,
        mix_mode: str = "alternate",
        box_beta: float = 4.0,
        mask_closing: bool = True,
        dilation_element_size: int | None = 7,
        dilation_iterations: int = 2,
        min_mask_voxels: int = 100,
        fallback_box_fraction: float = 0.5,
        seed: int | None = None,
        supervised_only: bool = False,
        use_confidence: bool = True,
        use_uncertainty: bool = True,
        use_probability_space: bool = True,
        use_feature_space: bool = True,
        use_image_space: bool = True,
    ) -> None:
        super().__init__()
        check_thresholds(tau, tau_feature, tau_min, tau_max, "TCSegLoss")
        if not 0.0 < fallback_box_fraction <= 1.0:
            raise MedSegZooError(f"TCSegLoss: fallback_box_fraction must be in (0, 1], got {fallback_box_fraction}")
        if mix_mode not in MIX_MODES:
            raise MedSegZooError(f"TCSegLoss: mix_mode must be one of {MIX_MODES}, got {mix_mode!r}")
        sup_dice = sup_dice if sup_dice is not None else ("per_sample" if supervised_only else "foreground_batch")
        if sup_dice not in SUP_DICE_KINDS:
            raise MedSegZooError(f"TCSegLoss: sup_dice must be one of {SUP_DICE_KINDS}, got {sup_dice!r}")
        if rampup_step < 1:
            raise MedSegZooError(f"TCSegLoss: rampup_step must be >= 1, got {rampup_step}")
        self.tau, self.tau_feature, self.tau_min, self.tau_max = tau, tau_feature, tau_min, tau_max
        self.prototype_confidence = tau_max if prototype_confidence is None else prototype_confidence
        self.consistency_weight, self.rampup_iterations, self.rampup_step = consistency_weight, rampup_iterations, int(rampup_step)
        self.sup_weight = float(sup_weight) if sup_weight is not None else (1.0 if supervised_only else 0.25)
        self.sup_dice = sup_dice
        self.calibration_weights = tuple(float(w) for w in calibration_weights)
        self.calibration_reduction = calibration_reduction
        _check_calibration(self.calibration_weights, calibration_reduction, "TCSegLoss")
        self.mix_weight, self.mix_start_iteration, self.mix_mode, self.box_beta = mix_weight, mix_start_iteration, mix_mode, box_beta
        self.mask_closing, self.dilation_element_size = mask_closing, dilation_element_size
        self.dilation_iterations, self.min_mask_voxels = dilation_iterations, min_mask_voxels
        self.fallback_box_fraction = fallback_box_fraction
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self.supervised_only = supervised_only
        self.use_confidence, self.use_uncertainty = use_confidence, use_uncertainty
        self.use_probability_space, self.use_feature_space, self.use_image_space = (
            use_probability_space,
            use_feature_space,
            use_image_space,
        )
        if sup_dice == "foreground_batch":
            # the released code's Binary_dice_loss: 1 - (2 sum(p g) + e) / (sum p + sum g + e) over the batch
            self.dice_ce = DiceCELoss(
                to_onehot_y=True, softmax=True, include_background=False, batch=True, smooth_nr=1e-8, smooth_dr=1e-8
            )
        else:
            self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)

    @property
    def needs_unlabeled(self) -> bool:
        """Whether the objective uses unlabeled images and the EMA teacher."""
        return not self.supervised_only

    @property
    def rng(self) -> np.random.Generator:
        """Random source of the mixing (boxes, random structuring elements)."""
        if self._rng is None:
            self._rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
        return self._rng

    def unsupervised_weight(self, iteration: int) -> float:
        """Ramped weight of ``L_pse + L_cal`` at ``iteration``."""
        stepped = self.rampup_step * (int(iteration) // self.rampup_step)
        return self.consistency_weight * sigmoid_rampup(stepped, self.rampup_iterations)

    def _similarities(self, output: Sequence[torch.Tensor], probabilities: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Prototype similarity maps per decoder; prototypes are detached (targets, not learners)."""
        maps = []
        for features, probs in zip(output, probabilities):
            confident = probs.detach().max(dim=1).values >= self.prototype_confidence
            prototypes = class_prototypes(features.detach(), probs.detach(), confident)
            maps.append(prototype_similarity(features, prototypes))
        return maps

    def masks(self, student_probs: Sequence[torch.Tensor], teacher_probs: Sequence[torch.Tensor], student_sims: Sequence[torch.Tensor] | None, teacher_sims: Sequence[torch.Tensor] | None) -> ReliabilityMasks:
        """The reliability masks with this objective's thresholds and switches."""
        return reliability_masks(
            [p.detach() for p in student_probs],
            teacher_probs,
            None if student_sims is None else [s.detach() for s in student_sims],
            teacher_sims,
            tau=self.tau,
            tau_feature=self.tau_feature,
            tau_min=self.tau_min,
            tau_max=self.tau_max,
            use_confidence=self.use_confidence,
            use_uncertainty=self.use_uncertainty,
        )

    def perturbation(self, reliability: ReliabilityMasks) -> torch.Tensor:
        """The perturbation mask of the unlabeled batch (eq. 16) with this objective's settings."""
        return perturbation_mask(
            reliability.unreliable,
            self.dilation_iterations,
            self.min_mask_voxels,
            closing=self.mask_closing,
            random_element_size=self.dilation_element_size,
            rng=self.rng,
        )

    def mix_boxes(self, reliability: ReliabilityMasks, n_labeled: int, iteration: int) -> tuple[torch.Tensor, bool]:
        """The boxes of ``mix_mode="alternate"`` at ``iteration``.

        Odd iterations box the centre of each pair's perturbation mask; even iterations, and
        odd ones where a mask is empty, use random boxes (the released code's alternation).

        Returns:
            ``(boxes (n_labeled, *spatial) bool, True when the reliability boxes were used)``.
        """
        unreliable = reliability.unreliable
        if iteration % 2 == 1:
            pair = torch.arange(n_labeled, device=unreliable.device) % unreliable.shape[0]
            boxes = centred_boxes(self.perturbation(reliability)[pair], self.rng, self.box_beta)
            if boxes is not None:
                return boxes, True
        return random_boxes(unreliable.shape[1:], n_labeled, self.rng, self.box_beta, unreliable.device), False

    def forward(  # noqa: PLR0913 - one step needs all of these
        self,
        network: nn.Module,
        teacher: nn.Module | None,
        labeled_image: torch.Tensor,
        label: torch.Tensor,
        unlabeled_image: torch.Tensor | None,
        iteration: int,
    ) -> dict[str, torch.Tensor]:
        """Run the student (and teacher) and return every term.

        Args:
            network: student; ``network(x, return_all=True)`` gives a
                :class:`~medsegzoo.networks.vnet_dual.DualDecoderOutput`.
            teacher: EMA teacher of the same class (None only when ``supervised_only``).
            labeled_image: ``(B_l, ch, *spatial)``.
            label: ``(B_l, 1, *spatial)`` class indices.
            unlabeled_image: ``(B_u, ch, *spatial)`` (None only when ``supervised_only``).
            iteration: 1-based training iteration (ramp-up, mix start, mix alternation).

        Returns:
            ``{"loss", "sup", "pse", "cal", "mix", "weight", "positive", "negative",
            "reliability_box", "pred"}`` (``reliability_box``: 1 when this step's mix boxed the
            perturbation masks; ``pred``: decoder 0 logits on the labeled images, for metrics).

        Raises:
            MedSegZooError: unlabeled images or teacher missing when the objective needs them.
        """
        n_labeled = labeled_image.shape[0]
        use_unlabeled = self.needs_unlabeled
        if use_unlabeled and (unlabeled_image is None or teacher is None or unlabeled_image.shape[0] == 0):
            raise MedSegZooError("TCSegLoss: the semi-supervised objective needs an unlabeled batch and a teacher (set supervised_only=true to train without)")
        images = torch.cat([labeled_image, unlabeled_image]) if use_unlabeled else labeled_image  # type: ignore[list-item]
        student = network(images, return_all=True)
        sup = torch.stack([self.dice_ce(lg[:n_labeled], label) for lg in student.logits]).sum()
        zero = sup.detach() * 0.0
        terms: dict[str, torch.Tensor] = {
            "sup": sup, "pse": zero, "cal": zero, "mix": zero, "reliability_box": zero, "pred": student.logits[0][:n_labeled].detach()
        }
        weight = self.unsupervised_weight(iteration)
        terms["weight"] = torch.tensor(weight)
        if not use_unlabeled:
            terms["loss"] = self.sup_weight * sup
            terms["positive"] = terms["negative"] = zero
            return terms

        probs = [torch.softmax(lg, dim=1) for lg in student.logits]
        with torch.no_grad():
            teacher_out = teacher(unlabeled_image, return_all=True)  # type: ignore[misc]
            teacher_probs = [torch.softmax(lg, dim=1) for lg in teacher_out.logits]
            teacher_sims = self._similarities(teacher_out.features, teacher_probs) if self.use_feature_space else None
        student_sims = self._similarities(student.features, probs) if self.use_feature_space else None
        reliability = self.masks(
            [p[n_labeled:] for p in probs],
            teacher_probs,
            None if student_sims is None else [s[n_labeled:] for s in student_sims],
            teacher_sims,
        )
        terms["positive"] = reliability.positive.float().mean()
        terms["negative"] = reliability.negative.any(dim=1).float().mean()
        if self.use_probability_space:
            pse = zero
            for b, lg in enumerate(student.logits):
                peer_label = probs[1 - b][n_labeled:].detach().argmax(dim=1)
                pse = pse + pseudo_label_loss(lg[n_labeled:], peer_label, reliability.positive, reliability.negative)
            terms["pse"] = pse
        terms["cal"] = calibration_loss(probs, student_sims, self.calibration_weights, self.calibration_reduction)
        if self.use_image_space and iteration > self.mix_start_iteration:
            terms["mix"], used_box = self._mix(network, labeled_image, label, unlabeled_image, teacher_probs, reliability, iteration)  # type: ignore[arg-type]
            terms["reliability_box"] = zero + float(used_box)
        terms["loss"] = self.sup_weight * sup + weight * (terms["pse"] + terms["cal"]) + self.mix_weight * terms["mix"]
        return terms

    def _mix(
        self,
        network: nn.Module,
        labeled_image: torch.Tensor,
        label: torch.Tensor,
        unlabeled_image: torch.Tensor,
        teacher_probs: Sequence[torch.Tensor],
        reliability: ReliabilityMasks,
        iteration: int,
    ) -> tuple[torch.Tensor, bool]:
        """CutMix and its cross-supervised loss (eq. 16-19, 22); also whether reliability boxes were used."""
        mixes = []
        if self.mix_mode == "alternate":
            boxes, used_box = self.mix_boxes(reliability, labeled_image.shape[0], iteration)
            for probs in teacher_probs:
                mixes.append(box_cutmix(labeled_image, label, unlabeled_image, probs.argmax(dim=1), boxes))
        else:
            used_box = False
            mask = self.perturbation(reliability)
            for i in range(mask.shape[0]):
                if not mask[i].any():  # everything reliable: no blind spot to target
                    mask[i] = random_box_mask(mask.shape[1:], self.fallback_box_fraction, device=mask.device)
            for probs in teacher_probs:
                mixes.append(reliability_cutmix(labeled_image, label, unlabeled_image, probs.argmax(dim=1), mask))
        # both teachers' mixes share the image; only the targets differ
        mixed = network(mixes[0][0], return_all=True)
        return mix_loss(mixed.logits, [target for _, target in mixes]), used_box
