"""Losses of Task Consistency Training (TCT) and its partial-label baselines (TAL, ME).

Notation (TCT paper, section 3; REFERENCE.md section 1): N foreground classes Omega, a sample
labeled for the classes Phi (a multi-hot ``labeled`` tensor of shape (B, N)), the label map
``y`` in the N-class system where every unlabeled class is 0 (background), the main head
softmax ``p`` (B, N+1, ...) and the auxiliary head softmaxes ``g`` (B, N, 2, ...).

* :class:`MarginalDiceLoss` (TAL, eq. 1-2): Dice over {0} and Phi after the probabilities of
  background and of every unlabeled class are summed into the background channel.
* :class:`AuxiliaryDiceLoss` (eq. 3-4): a 2-class Dice for every labeled task j, whose
  background target merges every other labeled class into background.
* :class:`ConsistencyLoss` (eq. 5-6): MSE between the main head (merged to {0, j}) and ATH j,
  kept only where IoU(main_j, ATH_j) >= theta; theta = median IoU over the heads (the
  ablation's fixed 0.5, batch mean, task mean are options).
* :class:`ExclusionDiceLoss`, :class:`MarginalCrossEntropyLoss`, :class:`ExclusionCrossEntropyLoss`
  and :class:`MarginalExclusionLoss` (ME baseline, Shi et al. 2021: the marginal and the
  exclusion loss, each a Dice and a cross-entropy term).
* :class:`TCTLoss`: the overall loss (eq. 7) with UAUWL (one learnable uncertainty for the
  main head, one shared by all auxiliary heads), the plain per-task UWL or fixed weights, and
  a sigmoid ramp-up w(t) for the consistency term; ``method="tal"|"me"`` gives the baselines.

Two readings of the paper that this module fixes (docs/README.md of the bundle says so too):

* Eq. 2 prints the merge set as "{0} U Phi"; the text ("merges [the unlabeled structures']
  output probabilities into the background channel") and eq. 5 say the complement, which is
  what :func:`merge_unlabeled_into_background` does.
* For the consistency term the main head is reduced to the two channels of ATH j:
  ``q^j = p^j`` and ``q^0 = 1 - p^j`` (every other channel is background for ATH j, as in
  eq. 4's target merge), so that both sides are distributions over {0, j}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from monai.losses import DiceLoss
from monai.networks.utils import one_hot
from torch import nn

from medsegzoo.errors import MedSegZooError, UnknownNameError

__all__ = [
    "CONSISTENCY_THRESHOLDS",
    "LOSS_WEIGHTINGS",
    "PARTIAL_LABEL_METHODS",
    "AuxiliaryDiceLoss",
    "ConsistencyLoss",
    "ExclusionCrossEntropyLoss",
    "ExclusionDiceLoss",
    "MarginalCrossEntropyLoss",
    "MarginalDiceLoss",
    "MarginalExclusionLoss",
    "TCTLoss",
    "consistency_keep_mask",
    "merge_unlabeled_into_background",
    "sigmoid_rampup",
]

CONSISTENCY_THRESHOLDS = ("task_median", "task_mean", "batch_mean", "fixed", "none")
LOSS_WEIGHTINGS = ("uauwl", "uwl", "fixed")
PARTIAL_LABEL_METHODS = ("tct", "tal", "me")


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise UnknownNameError(f"{what} {value!r} is not one of {', '.join(choices)}")
    return value


def _labeled_bool(labeled: torch.Tensor, batch: int, num_classes: int) -> torch.Tensor:
    """Validate a (B, N) multi-hot tensor and return it as bool."""
    if labeled.shape != (batch, num_classes):
        raise MedSegZooError(
            f"labeled-classes mask must have shape (batch, num_classes) = ({batch}, {num_classes}), "
            f"got {tuple(labeled.shape)}"
        )
    return labeled.bool()


def merge_unlabeled_into_background(probs: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
    """Eq. 2 / 5: add the unlabeled classes' probabilities to the background channel.

    Args:
        probs: softmax probabilities (B, N+1, ...).
        labeled: multi-hot (B, N) of the classes each sample is labeled for.

    Returns:
        ``q`` of the same shape: ``q^0 = p^0 + sum of p^c over unlabeled c``, ``q^c = p^c``
        for labeled c, 0 for unlabeled c (so that ``q`` still sums to 1 over channels).
    """
    batch, channels = probs.shape[:2]
    lab = _labeled_bool(labeled, batch, channels - 1).to(probs.dtype)
    view = (batch, channels - 1) + (1,) * (probs.ndim - 2)
    lab = lab.reshape(view)
    fg = probs[:, 1:]
    background = probs[:, :1] + ((1.0 - lab) * fg).sum(dim=1, keepdim=True)
    return torch.cat([background, lab * fg], dim=1)


def _per_channel_dice_loss(dice: DiceLoss, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, C) Dice losses per sample and channel from MONAI's DiceLoss(reduction='none')."""
    return dice(probs, target).reshape(probs.shape[0], probs.shape[1])


def _new_dice() -> DiceLoss:
    # probabilities are computed by the caller (merging happens after the softmax)
    return DiceLoss(include_background=True, to_onehot_y=False, softmax=False, reduction="none")


class MarginalDiceLoss(nn.Module):
    """TAL marginal Dice (eq. 1-2): Dice over {0} and the labeled classes after merging.

    Args:
        num_classes: N foreground classes (logits have N+1 channels).
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dice = _new_dice()

    def forward(self, logits: torch.Tensor, label: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of ``1 - mean Dice over {0} U Phi``.

        Args:
            logits: main head logits (B, N+1, ...).
            label: label map (B, 1, ...) in the N-class system (unlabeled classes are 0).
            labeled: multi-hot (B, N).

        Returns:
            Scalar loss.
        """
        q = merge_unlabeled_into_background(torch.softmax(logits, dim=1), labeled)
        y = one_hot(label.long(), self.num_classes + 1, dim=1).to(q.dtype)
        per_channel = _per_channel_dice_loss(self.dice, q, y)  # (B, N+1)
        lab = labeled.to(q.dtype)
        channel_mask = torch.cat([torch.ones_like(lab[:, :1]), lab], dim=1)
        per_sample = (per_channel * channel_mask).sum(1) / channel_mask.sum(1)
        return per_sample.mean()


class AuxiliaryDiceLoss(nn.Module):
    """Auxiliary-head Dice with merged targets (eq. 3-4).

    ATH j of a sample labeled for j is trained on the binary target ``y == j`` (its background
    merges background and every other labeled class); ATHs of unlabeled classes get no
    supervision from that sample (their ground truth is unknown).

    Args:
        num_classes: N (number of auxiliary heads).
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dice = _new_dice()

    def per_task(self, aux_logits: torch.Tensor, label: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
        """Per-sample, per-task losses ``1 - mean Dice over {0, j}`` (B, N), 0 where unlabeled.

        Args:
            aux_logits: (B, N, 2, ...) logits of the N auxiliary heads.
            label: label map (B, 1, ...).
            labeled: multi-hot (B, N).

        Returns:
            Tensor (B, N).
        """
        batch, n = aux_logits.shape[:2]
        lab = _labeled_bool(labeled, batch, n)
        g = torch.softmax(aux_logits, dim=2)
        losses = []
        for j in range(n):
            fg = (label == j + 1).to(g.dtype)
            z = torch.cat([1.0 - fg, fg], dim=1)
            losses.append(_per_channel_dice_loss(self.dice, g[:, j], z).mean(dim=1))
        return torch.stack(losses, dim=1) * lab.to(g.dtype)

    def forward(self, aux_logits: torch.Tensor, label: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
        """Eq. 3: sum over the labeled tasks, mean over the batch (scalar)."""
        return self.per_task(aux_logits, label, labeled).sum(dim=1).mean()


def _hard_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks (B, ...) per sample; two empty masks agree perfectly (1)."""
    a = a.flatten(1)
    b = b.flatten(1)
    inter = (a & b).sum(1).float()
    union = (a | b).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def consistency_keep_mask(iou: torch.Tensor, threshold: str = "task_median", fixed: float = 0.5) -> torch.Tensor:
    """Which (sample, head) consistency terms the IoU filter keeps (eq. 6's indicator).

    Args:
        iou: (B, N) IoU between the main head and ATH j per sample.
        threshold: "task_median" (paper: median over the N heads of a sample), "task_mean"
            (mean over the heads), "batch_mean" (per head, mean over the batch), "fixed"
            (``fixed``), "none" (keep everything).
        fixed: the fixed threshold.

    Returns:
        Bool tensor (B, N): True where ``iou >= theta``.

    Raises:
        UnknownNameError: an unknown threshold name.
    """
    _check_choice(threshold, CONSISTENCY_THRESHOLDS, "consistency threshold")
    if threshold == "none":
        return torch.ones_like(iou, dtype=torch.bool)
    if threshold == "fixed":
        theta = torch.full_like(iou, fixed)
    elif threshold == "task_median":
        # the true median (mean of the two middle values for an even count), not torch.median
        theta = torch.quantile(iou, 0.5, dim=1, keepdim=True)
    elif threshold == "task_mean":
        theta = iou.mean(dim=1, keepdim=True)
    else:  # batch_mean
        theta = iou.mean(dim=0, keepdim=True)
    return iou >= theta


class ConsistencyLoss(nn.Module):
    """Task consistency loss with IoU filtering (eq. 5-6).

    Args:
        threshold: IoU threshold rule, see :func:`consistency_keep_mask`.
        fixed_threshold: theta for ``threshold="fixed"``.
        classes: "all" (eq. 6 sums over every class of Omega) or "unlabeled" (only the classes a
            sample is not labeled for, the structures TCT is meant to exploit).
        detach_aux: treat the ATH predictions as fixed pseudo-labels (no gradient into the ATHs
            from this term). The paper's equation is symmetric; default False.
    """

    def __init__(
        self,
        threshold: str = "task_median",
        fixed_threshold: float = 0.5,
        classes: str = "all",
        detach_aux: bool = False,
    ) -> None:
        super().__init__()
        self.threshold = _check_choice(threshold, CONSISTENCY_THRESHOLDS, "consistency threshold")
        self.fixed_threshold = float(fixed_threshold)
        self.classes = _check_choice(classes, ("all", "unlabeled"), "consistency classes")
        self.detach_aux = detach_aux

    def terms(self, main_logits: torch.Tensor, aux_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-(sample, head) MSE and IoU.

        Args:
            main_logits: (B, N+1, ...).
            aux_logits: (B, N, 2, ...).

        Returns:
            ``(mse, iou)``, both (B, N); mse is ``1/(2 N_v) sum_{c in {0,j}} sum_i (q - g)^2``.
        """
        p = torch.softmax(main_logits, dim=1)[:, 1:]  # (B, N, ...)
        g = torch.softmax(aux_logits, dim=2)
        if self.detach_aux:
            g = g.detach()
        q = torch.stack([1.0 - p, p], dim=2)  # (B, N, 2, ...): main head merged to {0, j}
        mse = ((q - g) ** 2).flatten(3).sum(dim=(2, 3)) / (2 * q[0, 0, 0].numel())
        with torch.no_grad():
            iou = torch.stack(
                [_hard_iou(p[:, j] > 0.5, g[:, j, 1] > 0.5) for j in range(p.shape[1])], dim=1
            )
        return mse, iou

    def forward(
        self, main_logits: torch.Tensor, aux_logits: torch.Tensor, labeled: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 6, summed over the kept heads and averaged over the batch.

        Args:
            main_logits: (B, N+1, ...).
            aux_logits: (B, N, 2, ...).
            labeled: multi-hot (B, N); needed for ``classes="unlabeled"``.

        Returns:
            ``(loss, keep)``: the scalar loss and the bool (B, N) mask of kept terms.
        """
        mse, iou = self.terms(main_logits, aux_logits)
        keep = consistency_keep_mask(iou, self.threshold, self.fixed_threshold)
        if self.classes == "unlabeled":
            if labeled is None:
                raise MedSegZooError("ConsistencyLoss(classes='unlabeled') needs the labeled mask")
            keep = keep & ~_labeled_bool(labeled, *mse.shape)
        return (mse * keep.to(mse.dtype)).sum(dim=1).mean(), keep


class ExclusionDiceLoss(nn.Module):
    """Exclusion Dice of the ME baseline (Shi et al., 2021).

    A voxel labeled as one of the sample's labeled organs cannot belong to an unlabeled class,
    so the Dice overlap between each unlabeled class's probability and the union of the
    labeled organs is minimised (mean over the unlabeled classes of each sample).
    """

    def forward(self, logits: torch.Tensor, label: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
        """Scalar exclusion loss (0 for samples labeled for every class).

        Args:
            logits: (B, N+1, ...).
            label: (B, 1, ...).
            labeled: multi-hot (B, N).
        """
        p = torch.softmax(logits, dim=1)[:, 1:].flatten(2)  # (B, N, V)
        lab = _labeled_bool(labeled, p.shape[0], p.shape[1])
        organs = (label.flatten(1) > 0).to(p.dtype).unsqueeze(1)  # (B, 1, V)
        overlap = 2 * (p * organs).sum(2) / (p.sum(2) + organs.sum(2) + 1e-5)  # (B, N)
        unlabeled = (~lab).to(p.dtype)
        per_sample = (overlap * unlabeled).sum(1) / unlabeled.sum(1).clamp_min(1)
        return per_sample.mean()


class MarginalCrossEntropyLoss(nn.Module):
    """Marginal cross-entropy of the ME baseline (Shi et al., 2021; TAL's merge, eq. 2 here).

    The unlabeled classes' probabilities are added to the background channel (a marginal
    probability) and the usual cross-entropy is taken over {0} and the labeled classes:
    ``mean_v -log q_{y(v)}(v)`` per sample, mean over the batch. The logarithm of the merged
    background is a log-sum-exp of log-probabilities, so it stays finite where a class's
    probability underflows.
    """

    def forward(self, logits: torch.Tensor, label: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
        """Scalar marginal cross-entropy.

        Args:
            logits: (B, N+1, ...).
            label: (B, 1, ...) in the N-class system (unlabeled classes are 0).
            labeled: multi-hot (B, N).
        """
        batch, channels = logits.shape[:2]
        lab = _labeled_bool(labeled, batch, channels - 1)
        log_p = torch.log_softmax(logits.float(), dim=1)
        view = (batch, channels - 1) + (1,) * (logits.ndim - 2)
        # background merges channel 0 and every unlabeled class; labeled classes keep their own
        in_background = torch.cat([torch.ones_like(lab[:, :1]), ~lab], dim=1).reshape((batch, channels) + view[2:])
        log_background = torch.logsumexp(log_p.masked_fill(~in_background, float("-inf")), dim=1, keepdim=True)
        log_q = torch.cat([log_background, log_p[:, 1:]], dim=1)
        nll = -log_q.gather(1, label.long())  # (B, 1, ...): a label is always 0 or a labeled class
        return nll.flatten(1).mean(1).mean()


class ExclusionCrossEntropyLoss(nn.Module):
    """Exclusion cross-entropy of the ME baseline (Shi et al., 2021).

    With the exclusion label ``e`` (the union of the sample's labeled organs, where no
    unlabeled class can be), the term ``sum_n e log(p_n + epsilon)`` over the unlabeled classes
    n is minimised (Shi et al. write it with ``+ epsilon`` inside the logarithm; with
    ``epsilon = 1`` it is >= 0 and 0 when the unlabeled classes are absent from the labeled
    organs). Mean over voxels per sample, mean over the batch.

    Args:
        epsilon: the constant inside the logarithm.
    """

    def __init__(self, epsilon: float = 1.0) -> None:
        super().__init__()
        if epsilon <= 0:
            raise MedSegZooError(f"ExclusionCrossEntropyLoss: epsilon must be > 0, got {epsilon}")
        self.epsilon = float(epsilon)

    def forward(self, logits: torch.Tensor, label: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
        """Scalar exclusion cross-entropy (0 for samples labeled for every class).

        Args:
            logits: (B, N+1, ...).
            label: (B, 1, ...).
            labeled: multi-hot (B, N).
        """
        p = torch.softmax(logits.float(), dim=1)[:, 1:].flatten(2)  # (B, N, V)
        lab = _labeled_bool(labeled, p.shape[0], p.shape[1])
        organs = (label.flatten(1) > 0).to(p.dtype).unsqueeze(1)  # (B, 1, V): the exclusion label
        per_class = (organs * torch.log(p + self.epsilon)).mean(2)  # (B, N)
        return (per_class * (~lab).to(p.dtype)).sum(1).mean()


class MarginalExclusionLoss(nn.Module):
    """ME baseline: marginal loss plus ``exclusion_weight`` times the exclusion loss.

    Each loss is a Dice and (with ``cross_entropy``, as Shi et al. publish them) a
    cross-entropy term: ``mDice + mCE + w (eDice + eCE)``.

    Args:
        num_classes: N.
        exclusion_weight: weight of the exclusion terms.
        cross_entropy: include the marginal and exclusion cross-entropy terms.
        epsilon: constant of the exclusion cross-entropy.
    """

    def __init__(self, num_classes: int, exclusion_weight: float = 1.0, cross_entropy: bool = True, epsilon: float = 1.0) -> None:
        super().__init__()
        self.marginal = MarginalDiceLoss(num_classes)
        self.exclusion = ExclusionDiceLoss()
        self.marginal_ce = MarginalCrossEntropyLoss()
        self.exclusion_ce = ExclusionCrossEntropyLoss(epsilon)
        self.exclusion_weight = float(exclusion_weight)
        self.cross_entropy = bool(cross_entropy)

    def parts(self, logits: torch.Tensor, label: torch.Tensor, labeled: torch.Tensor) -> dict[str, torch.Tensor]:
        """The terms ``main`` (marginal Dice), ``exclusion`` (Dice) and, with CE, ``marginal_ce``, ``exclusion_ce``."""
        out = {"main": self.marginal(logits, label, labeled), "exclusion": self.exclusion(logits, label, labeled)}
        if self.cross_entropy:
            out["marginal_ce"] = self.marginal_ce(logits, label, labeled)
            out["exclusion_ce"] = self.exclusion_ce(logits, label, labeled)
        return out

    def combine(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``mDice [+ mCE] + w (eDice [+ eCE])`` from :meth:`parts`."""
        zero = parts["main"] * 0.0
        marginal = parts["main"] + parts.get("marginal_ce", zero)
        return marginal + self.exclusion_weight * (parts["exclusion"] + parts.get("exclusion_ce", zero))

    def forward(self, logits: torch.Tensor, label: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
        """Scalar ME loss."""
        return self.combine(self.parts(logits, label, labeled))


def sigmoid_rampup(current: float, length: float) -> float:
    """Sigmoid-shaped ramp-up ``exp(-5 (1 - t)^2)``, t = current / length clipped to [0, 1].

    The paper replaces lambda by "a ramp-up weighting function w(t)" without giving its form;
    this is the usual one of consistency-based semi-supervised learning (Laine and Aila 2017).

    Args:
        current: progress (e.g. epochs, fractional allowed).
        length: ramp-up length in the same unit; <= 0 means no ramp-up (weight 1).

    Returns:
        Weight in (0, 1].
    """
    if length <= 0:
        return 1.0
    t = min(max(current / length, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


class TCTLoss(nn.Module):
    """Overall loss of TCT (eq. 7) and of the TAL / ME baselines, with the ablation switches.

    For ``method="tct"``::

        uauwl: L_main / s1^2 + L_aux / s2^2 + log s1 + log s2 + w(t) L_con
        uwl:   L_main / s1^2 + sum_j L_aux_j / s_j^2 + log s1 + sum_j log s_j + w(t) L_con
        fixed: L_main + aux_weight * L_aux + w(t) L_con

    with ``w(t) = consistency_weight * sigmoid_rampup(epoch, rampup_epochs)``. The
    uncertainties are learnable parameters of this module (stored as ``log sigma``, started
    at sigma = 1), so the optimizer must include ``loss.parameters()``. In UWL, a task's
    ``log s_j`` term only counts in batches where that task is labeled (otherwise it would
    drive s_j to 0 with nothing to balance it).

    Args:
        num_classes: N.
        method: "tct", "tal" (marginal Dice only) or "me" (marginal + exclusion).
        consistency: use L_con (TCT only).
        threshold: IoU filtering rule ("task_median" is the paper's; "none" switches filtering off).
        fixed_threshold: theta of the "fixed" rule.
        weighting: "uauwl", "uwl" or "fixed".
        aux_weight: weight of L_aux with ``weighting="fixed"``.
        consistency_weight: maximum of w(t).
        rampup_epochs: length of the ramp-up in epochs.
        consistency_classes: "all" (eq. 6) or "unlabeled".
        detach_aux: ATH predictions as fixed targets in L_con.
        exclusion_weight: weight of the exclusion terms for ``method="me"``.
        me_cross_entropy: ``method="me"`` includes the marginal and exclusion cross-entropy terms
            of Shi et al. (default) besides the two Dice terms.
        exclusion_epsilon: constant inside the exclusion cross-entropy's logarithm.

    Raises:
        UnknownNameError: an unknown method, threshold or weighting name.
    """

    def __init__(
        self,
        num_classes: int = 5,
        method: str = "tct",
        consistency: bool = True,
        threshold: str = "task_median",
        fixed_threshold: float = 0.5,
        weighting: str = "uauwl",
        aux_weight: float = 1.0,
        consistency_weight: float = 1.0,
        rampup_epochs: float = 40.0,
        consistency_classes: str = "all",
        detach_aux: bool = False,
        exclusion_weight: float = 1.0,
        me_cross_entropy: bool = True,
        exclusion_epsilon: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.method = _check_choice(method, PARTIAL_LABEL_METHODS, "partial-label method")
        self.weighting = _check_choice(weighting, LOSS_WEIGHTINGS, "loss weighting")
        self.consistency = bool(consistency)
        self.aux_weight = float(aux_weight)
        self.consistency_weight = float(consistency_weight)
        self.rampup_epochs = float(rampup_epochs)
        self.main_loss = MarginalDiceLoss(num_classes)
        self.aux_loss = AuxiliaryDiceLoss(num_classes)
        self.consistency_loss = ConsistencyLoss(threshold, fixed_threshold, consistency_classes, detach_aux)
        self.me_loss = MarginalExclusionLoss(num_classes, exclusion_weight, me_cross_entropy, exclusion_epsilon)
        self.exclusion_weight = float(exclusion_weight)
        uses_sigmas = self.method == "tct" and self.weighting != "fixed"
        n_aux_sigmas = 1 if self.weighting == "uauwl" else num_classes
        # log sigma of the main head and of the auxiliary head(s); sigma starts at 1
        self.log_sigma_main = nn.Parameter(torch.zeros(())) if uses_sigmas else None
        self.log_sigma_aux = nn.Parameter(torch.zeros(n_aux_sigmas)) if uses_sigmas else None

    def consistency_ramp(self, epoch: float) -> float:
        """w(t) at a (fractional) epoch."""
        return self.consistency_weight * sigmoid_rampup(epoch, self.rampup_epochs)

    def forward(
        self,
        outputs: torch.Tensor | Mapping[str, torch.Tensor],
        label: torch.Tensor,
        labeled: torch.Tensor,
        epoch: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Compute the loss and its parts.

        Args:
            outputs: network output; a dict ``{"main", "aux"}`` (TCTUNet in training) or the main
                logits alone (enough for TAL / ME).
            label: label map (B, 1, ...) in the N-class system.
            labeled: multi-hot (B, N).
            epoch: training progress in epochs for the ramp-up.

        Returns:
            Dict with "loss" (to back-propagate) and the detached parts "main", "aux", "con",
            "con_weight", "kept" (fraction of kept consistency terms), "sigma_main", "sigma_aux";
            for ME "exclusion" (Dice), "marginal_ce" and "exclusion_ce".

        Raises:
            MedSegZooError: TCT without auxiliary outputs.
        """
        main = outputs["main"] if isinstance(outputs, Mapping) else outputs
        zero = main.new_zeros(())
        parts: dict[str, torch.Tensor] = {}
        if self.method == "me":  # its "main" is the same marginal Dice
            parts.update(self.me_loss.parts(main, label, labeled))
            total = self.me_loss.combine(parts)
        else:
            l_main = self.main_loss(main, label, labeled)
            parts["main"] = l_main
        if self.method == "tal":
            total = l_main
        elif self.method == "tct":
            if not isinstance(outputs, Mapping) or "aux" not in outputs:
                raise MedSegZooError(
                    "TCTLoss(method='tct') needs the auxiliary head outputs: build the network with "
                    "aux_heads=True and keep it in training mode"
                )
            aux = outputs["aux"]
            per_task = self.aux_loss.per_task(aux, label, labeled)  # (B, N)
            l_aux = per_task.sum(1).mean()
            parts["aux"] = l_aux
            total = self._weighted(l_main, per_task, labeled)
            if self.consistency:
                l_con, keep = self.consistency_loss(main, aux, labeled)
                w = self.consistency_ramp(epoch)
                total = total + w * l_con
                parts.update(con=l_con, con_weight=zero + w, kept=keep.float().mean())
        out = {"loss": total}
        out.update({k: v.detach() for k, v in parts.items()})
        if self.log_sigma_main is not None:
            out["sigma_main"] = self.log_sigma_main.detach().exp()
            out["sigma_aux"] = self.log_sigma_aux.detach().exp().mean()
        return out

    def _weighted(self, l_main: torch.Tensor, per_task: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
        """Combine main and auxiliary losses per the weighting rule."""
        if self.weighting == "fixed" or self.log_sigma_main is None:
            return l_main + self.aux_weight * per_task.sum(1).mean()
        s1 = self.log_sigma_main
        total = l_main * torch.exp(-2 * s1) + s1
        if self.weighting == "uauwl":
            s2 = self.log_sigma_aux[0]
            return total + per_task.sum(1).mean() * torch.exp(-2 * s2) + s2
        task_loss = per_task.mean(0)  # (N,) batch mean per task
        present = labeled.bool().any(0).to(task_loss.dtype)
        s = self.log_sigma_aux
        return total + (task_loss * torch.exp(-2 * s) + s * present).sum()
