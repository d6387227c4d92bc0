"""TCSeg's tri-space calibrated objective (paper 004, sections 3.3-3.4; REFERENCE.md section 4).

Terms, each a function tested on hand-made tensors, and :class:`TCSegLoss`, which runs one
training step's worth of them on a student (:class:`~medsegzoo.networks.DualDecoderVNet`) and
its EMA teacher:

* ``L_sup`` (eq. 20): Dice + cross-entropy on the labeled images, for each decoder.
* ``L_pse`` (eq. 14, 21): probability space. Each student decoder learns from its peer's
  hard pseudo-label on the positive (C+U-) voxels, plus the complementary-label loss
  ``-log(1 - p_k)`` on the negative (voxel, class) pairs; each part is averaged over its
  mask (zero when the mask is empty).
* ``L_cal`` (eq. 15): feature space. Squared distances, summed over classes and averaged over
  every labeled and unlabeled voxel, between the two decoders' probabilities, between their
  prototype similarity maps, and between each decoder's probabilities and its own prototype map.
* ``L_mix`` (eq. 17-19, 22): image space. Each labeled image gets the unlabeled image pasted
  over the perturbation mask (dilated unreliable region, largest component); its target is
  the ground truth outside and the teacher's pseudo-label inside; decoder b is supervised
  by the mixed target built from teacher decoder 1-b (branches supervise each other).

Total (eq. 23 with the usual mean-teacher ramp-up): ``sup_weight * L_sup + w(t) * (L_pse +
L_cal) + mix_weight * L_mix`` with ``w(t) = consistency_weight * exp(-5 (1 - t/T)^2)``
(Laine & Aila's sigmoid ramp-up; the released code ramps over 40 x 150 = 6000 iterations).
Choices the paper leaves open, and what this module does, are listed in the bundle README.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    "TCSegLoss",
    "calibration_loss",
    "mix_loss",
    "pseudo_label_loss",
    "random_box_mask",
    "reliability_cutmix",
    "sigmoid_rampup",
]


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


def calibration_loss(
    probabilities: Sequence[torch.Tensor], similarities: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """Feature-space calibration (TCSeg eq. 15), averaged over voxels and batch.

    Args:
        probabilities: the two decoders' probabilities ``(B, C, *spatial)``.
        similarities: the two decoders' prototype similarity maps, or None ("w/o feat."
            ablation: only the probability agreement term remains).

    Returns:
        Scalar ``mean_v [ ||p1 - p2||^2 + ||q1 - q2||^2 + ||p1 - q1||^2 + ||p2 - q2||^2 ]``
        (squared norms over the class axis).
    """

    def sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).pow(2).sum(dim=1).mean()

    p1, p2 = probabilities
    loss = sq(p1, p2)
    if similarities is not None:
        q1, q2 = similarities
        loss = loss + sq(q1, q2) + sq(p1, q1) + sq(p2, q2)
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


def mix_loss(logits: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of decoder b on the mixed target from teacher decoder 1-b, mean over b (eq. 22)."""
    return torch.stack([F.cross_entropy(lg, targets[1 - b]) for b, lg in enumerate(logits)]).mean()


class TCSegLoss(nn.Module):
    """One TCSeg training step's objective (a callable object the semi-supervised trainer uses).

    Args:
        tau: probability-space consistency tolerance (paper code: 0.05).
        tau_feature: prototype-space tolerance (paper code: ``2 * tau`` = 0.1).
        tau_min: negative-label confidence bound (0.1).
        tau_max: positive-label confidence bound (0.85).
        prototype_confidence: a voxel enters its decoder's prototypes when its maximum class
            probability reaches this (default: ``tau_max``).
        consistency_weight: final weight of ``L_pse + L_cal``.
        rampup_iterations: length of the sigmoid ramp-up of that weight (6000 as in the code).
        sup_weight: weight of ``L_sup``.
        mix_weight: weight of ``L_mix``.
        mix_start_iteration: ``L_mix`` starts at this iteration (released code: after 100), when
            the teacher's pseudo-labels are no longer noise.
        dilation_iterations: dilation steps of the perturbation mask.
        fallback_box_fraction: box side (fraction of the patch) used when a sample's
            perturbation mask is empty (everything reliable), as the released code does.
        supervised_only: the "Only sup" baseline: ``L_sup`` only, no teacher, no unlabeled data.
        use_confidence: False -> "w/o C(v)" ablation.
        use_uncertainty: False -> "w/o U(v)" ablation.
        use_probability_space: False -> "w/o prob." (no ``L_pse``).
        use_feature_space: False -> "w/o feat." (no prototypes: no prototype uncertainty, no
            prototype terms in ``L_cal``).
        use_image_space: False -> "w/o img." (no ``L_mix``).
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
        sup_weight: float = 1.0,
        mix_weight: float = 1.0,
        mix_start_iteration: int = 100,
        dilation_iterations: int = 2,
        fallback_box_fraction: float = 0.5,
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
        self.tau, self.tau_feature, self.tau_min, self.tau_max = tau, tau_feature, tau_min, tau_max
        self.prototype_confidence = tau_max if prototype_confidence is None else prototype_confidence
        self.consistency_weight, self.rampup_iterations = consistency_weight, rampup_iterations
        self.sup_weight, self.mix_weight, self.mix_start_iteration = sup_weight, mix_weight, mix_start_iteration
        self.dilation_iterations, self.fallback_box_fraction = dilation_iterations, fallback_box_fraction
        self.supervised_only = supervised_only
        self.use_confidence, self.use_uncertainty = use_confidence, use_uncertainty
        self.use_probability_space, self.use_feature_space, self.use_image_space = (
            use_probability_space,
            use_feature_space,
            use_image_space,
        )
        self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)

    @property
    def needs_unlabeled(self) -> bool:
        """Whether the objective uses unlabeled images and the EMA teacher."""
        return not self.supervised_only

    def unsupervised_weight(self, iteration: int) -> float:
        """Ramped weight of ``L_pse + L_cal`` at ``iteration``."""
        return self.consistency_weight * sigmoid_rampup(iteration, self.rampup_iterations)

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
            iteration: 1-based training iteration (ramp-up, mix start).

        Returns:
            ``{"loss", "sup", "pse", "cal", "mix", "weight", "positive", "negative", "pred"}``
            (``pred``: decoder 0 logits on the labeled images, for metrics).

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
        terms: dict[str, torch.Tensor] = {"sup": sup, "pse": zero, "cal": zero, "mix": zero, "pred": student.logits[0][:n_labeled].detach()}
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
        terms["cal"] = calibration_loss(probs, student_sims)
        if self.use_image_space and iteration >= self.mix_start_iteration:
            terms["mix"] = self._mix(network, labeled_image, label, unlabeled_image, teacher_probs, reliability)  # type: ignore[arg-type]
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
    ) -> torch.Tensor:
        """Reliability-driven CutMix and its cross-supervised loss (eq. 16-19, 22)."""
        mask = perturbation_mask(reliability.unreliable, self.dilation_iterations)
        for i in range(mask.shape[0]):
            if not mask[i].any():  # everything reliable: no blind spot to target
                mask[i] = random_box_mask(mask.shape[1:], self.fallback_box_fraction, device=mask.device)
        mixed_images, targets = [], []
        for probs in teacher_probs:
            image, target = reliability_cutmix(labeled_image, label, unlabeled_image, probs.argmax(dim=1), mask)
            mixed_images.append(image)
            targets.append(target)
        mixed = network(mixed_images[0], return_all=True)
        return mix_loss(mixed.logits, targets)
