"""nnU-Net's deep-supervision weighting, for MONAI's :class:`~monai.losses.DeepSupervisionLoss`.

MONAI's ``DeepSupervisionLoss`` takes an explicit ``weights`` list; its built-in ``"exp"`` mode
floors the weights at 1/16 and does not normalise, which is not nnU-Net's rule. nnU-Net (and
STU-Net, which trains with it) weights the output at level ``i`` (0 = full resolution) by
``1 / 2**i``, gives the lowest-resolution output weight 0, and normalises the weights to sum to 1.
"""

from __future__ import annotations

from monai.losses import DeepSupervisionLoss
from torch.nn.modules.loss import _Loss

__all__ = ["nnunet_deep_supervision_loss", "nnunet_deep_supervision_weights"]


def nnunet_deep_supervision_weights(levels: int) -> list[float]:
    """nnU-Net's deep-supervision weights for ``levels`` outputs (full resolution first).

    Args:
        levels: number of network outputs (STU-Net: 5, one per decoder level).

    Returns:
        ``levels`` weights summing to 1; the last (coarsest) is 0 when ``levels > 1``.

    Raises:
        ValueError: ``levels < 1``.
    """
    if levels < 1:
        raise ValueError(f"deep supervision needs at least one output level, got {levels}")
    weights = [1.0 / 2**i for i in range(levels)]
    if levels > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def nnunet_deep_supervision_loss(loss: _Loss, levels: int) -> DeepSupervisionLoss:
    """Wrap ``loss`` (e.g. ``DiceCELoss``) in MONAI's deep-supervision loss with nnU-Net's weights.

    MONAI resizes the target to each output's resolution with nearest-neighbour interpolation,
    as nnU-Net downsamples its segmentation targets.

    Args:
        loss: per-level loss.
        levels: number of outputs the network returns in training mode.
    """
    return DeepSupervisionLoss(loss, weights=nnunet_deep_supervision_weights(levels))
