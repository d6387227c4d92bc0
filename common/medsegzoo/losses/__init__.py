"""Losses of the four methods (partial-label, universal-model, TCSeg, nnU-Net-style).

Names resolve lazily (see :mod:`medsegzoo.utils.lazy`).
To add a loss, add one line to ``_EXPORTS``: public name -> defining module.
"""

from __future__ import annotations

from medsegzoo.utils.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "TCSegLoss": "medsegzoo.losses.tcseg",
    "UniversalLoss": "medsegzoo.losses.universal",
    "TCTLoss": "medsegzoo.losses.tct",
    "MarginalDiceLoss": "medsegzoo.losses.tct",
    "AuxiliaryDiceLoss": "medsegzoo.losses.tct",
    "ConsistencyLoss": "medsegzoo.losses.tct",
    "ExclusionDiceLoss": "medsegzoo.losses.tct",
    "MarginalExclusionLoss": "medsegzoo.losses.tct",
    "merge_unlabeled_into_background": "medsegzoo.losses.tct",
    "consistency_keep_mask": "medsegzoo.losses.tct",
    "sigmoid_rampup": "medsegzoo.losses.tct",
    "nnunet_deep_supervision_loss": "medsegzoo.losses.deep_supervision",
    "nnunet_deep_supervision_weights": "medsegzoo.losses.deep_supervision",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
