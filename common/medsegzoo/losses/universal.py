"""Universal Model loss: per-class BCE + per-volume soft Dice, masked to the labeled classes.

Paper 002, "masked back-propagation" (REFERENCE.md section 2): each output channel is a
one-vs-all sigmoid; a sample contributes loss terms only for the classes its data set labels
(a KiTS scan says nothing about the spleen, whose voxels are "background" there). Both terms
are computed per (volume, class) and averaged over the labeled (volume, class) pairs. Dice is
computed per volume and class (the public code reduces Dice across the batch first, a known
bug; we do not reproduce it).

The labeled classes come either as an explicit multi-hot ``labeled`` tensor ``(B, K)`` or
encoded in the target: channels filled with ``ignore_value`` (default -1) are unlabeled
(:func:`mask_unlabeled_channels` writes that encoding, so the loss also works inside MONAI's
``SupervisedTrainer``, which calls ``loss(pred, label)`` with two arguments).

Unlabeled pairs are removed by boolean indexing before any arithmetic, so their gradient is
exactly zero (not a small number from a multiplication by 0 of a NaN or Inf).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from medsegzoo.errors import DataValidationError

__all__ = ["UniversalLoss", "mask_unlabeled_channels"]


def mask_unlabeled_channels(
    target: torch.Tensor, labeled: torch.Tensor, ignore_value: float = -1.0
) -> torch.Tensor:
    """Fill the channels of unlabeled classes with ``ignore_value``.

    Args:
        target: multi-hot target ``(B, K, *spatial)``.
        labeled: multi-hot labeled classes ``(B, K)`` (bool or 0/1).

    Returns:
        Float target with unlabeled ``(b, k)`` channels set to ``ignore_value``.

    Raises:
        DataValidationError: shapes that do not match.
    """
    if labeled.shape != target.shape[:2]:
        raise DataValidationError(
            f"labeled-class mask of shape {tuple(labeled.shape)} does not match the target's "
            f"(batch, classes) {tuple(target.shape[:2])}"
        )
    out = target.float().clone()
    keep = labeled.to(device=target.device).bool()
    out[~keep] = ignore_value
    return out


class UniversalLoss(nn.Module):
    """Masked per-class BCE-with-logits + soft Dice.

    Args:
        bce_weight: weight of the BCE term.
        dice_weight: weight of the Dice term.
        smooth: Dice smoothing added to numerator and denominator.
        ignore_value: target value marking unlabeled channels (when ``labeled`` is not given).
        channels: only these output channels enter the loss (None: all). Extension to new
            classes trains the new channels alone; the frozen old ones would only cost time.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1e-5,
        ignore_value: float = -1.0,
        channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.channels = None if channels is None else [int(c) for c in channels]
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.smooth = smooth
        self.ignore_value = ignore_value

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, labeled: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits: ``(B, K, *spatial)``.
            target: multi-hot ``(B, K, *spatial)`` in {0, 1} (unlabeled channels may hold
                ``ignore_value``).
            labeled: optional ``(B, K)`` multi-hot of labeled classes; None reads the mask
                from ``target`` (a channel is labeled unless its first voxel is ``ignore_value``).

        Returns:
            Scalar loss; 0 (connected to the graph) when no class of the batch is labeled.

        Raises:
            DataValidationError: shapes that do not match.
        """
        if logits.shape != target.shape:
            raise DataValidationError(
                f"UniversalLoss: logits {tuple(logits.shape)} and target {tuple(target.shape)} differ"
            )
        if self.channels is not None:
            logits, target = logits[:, self.channels], target[:, self.channels]
            labeled = None if labeled is None else labeled[:, self.channels]
        batch, classes = logits.shape[:2]
        flat_logits = logits.reshape(batch, classes, -1)
        flat_target = target.reshape(batch, classes, -1).to(flat_logits.dtype)
        if labeled is None:
            keep = flat_target[:, :, 0] != self.ignore_value
        else:
            if labeled.shape != (batch, classes):
                raise DataValidationError(
                    f"UniversalLoss: labeled mask {tuple(labeled.shape)} != (batch, classes) {(batch, classes)}"
                )
            keep = labeled.to(device=logits.device).bool()
        if not bool(keep.any()):
            return flat_logits.sum() * 0.0
        pred = flat_logits[keep]  # (P, N): only labeled (volume, class) pairs from here on
        truth = flat_target[keep]
        bce = F.binary_cross_entropy_with_logits(pred, truth, reduction="none").mean(dim=1)
        prob = torch.sigmoid(pred)
        intersection = (prob * truth).sum(dim=1)
        denominator = prob.sum(dim=1) + truth.sum(dim=1)
        dice = 1.0 - (2.0 * intersection + self.smooth) / (denominator + self.smooth)
        return self.bce_weight * bce.mean() + self.dice_weight * dice.mean()
