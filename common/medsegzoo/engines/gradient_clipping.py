"""Gradient-norm clipping as an ignite handler for MONAI trainers.

nnU-Net (and STU-Net, trained with it) clips the global gradient norm to 12 before every SGD
step; with Nesterov momentum 0.99 and lr 0.01 the first iterations otherwise explode to NaN
(seen on phantoms with STU-Net-S: loss 3.7 -> 10.6 -> 35.7 -> 441 -> 2.4e5 -> NaN at iterations 21-26). MONAI's
:class:`~monai.engines.SupervisedTrainer` has no clipping option, but it fires
``IterationEvents.BACKWARD_COMPLETED`` between ``backward()`` and ``optimizer.step()``; this
handler clips there. Under AMP the gradients are unscaled first (``GradScaler.unscale_``), so
the threshold applies to the true gradients and ``scaler.step`` does not unscale twice.

Bundle config::

    {"_target_": "medsegzoo.engines.gradient_clipping.GradientNormClipping", "max_norm": 12.0}

in the trainer's ``train_handlers``.
"""

from __future__ import annotations

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents

__all__ = ["GradientNormClipping"]


class GradientNormClipping:
    """Clip the trainer network's gradient norm after each backward pass.

    Args:
        max_norm: largest allowed norm of all gradients together (nnU-Net: 12).
        norm_type: p of the p-norm (2: Euclidean).
    """

    def __init__(self, max_norm: float = 12.0, norm_type: float = 2.0) -> None:
        if not max_norm > 0:
            raise ValueError(f"max_norm must be positive, got {max_norm}")
        self.max_norm = float(max_norm)
        self.norm_type = float(norm_type)
        self.last_norm: float | None = None

    def attach(self, engine: Engine) -> None:
        """Register on the trainer's ``BACKWARD_COMPLETED`` event."""
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        scaler = getattr(engine, "scaler", None)
        if getattr(engine, "amp", False) and scaler is not None and scaler.is_enabled():
            scaler.unscale_(engine.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.max_norm, self.norm_type)
        self.last_norm = float(norm)  # the norm before clipping, for logging and tests
