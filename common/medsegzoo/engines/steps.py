"""Training iterations for objectives that MONAI's ``loss(pred, label)`` call cannot express.

MONAI's :class:`~monai.engines.SupervisedTrainer` takes an ``iteration_update`` callable for
such cases. Both steps here share one skeleton (:class:`ObjectiveStep`): prepare the batch, run
the forward pass through ``engine.inferer`` (so a
:class:`~medsegzoo.engines.precision.MixedPrecisionTrainer` autocasts it and the loss sees
float32), fire MONAI's iteration events (handlers such as gradient clipping and the stats
handlers work as with the plain trainer), back-propagate (with the GradScaler for float16 on
CUDA) and step the optimizer. Subclasses only say how the forward pass and the loss are called:

* :class:`PartialLabelStep` (TCT, TAL, ME): the loss also needs each sample's labeled-classes
  mask and the training progress (ramp-ups), and TCT's network returns several heads.
* :class:`LabeledClassesStep` (universal model): only the heads of the classes some sample of
  the batch labels are run; the masked loss would give every other head a zero gradient, so
  computing them is pure cost (a MSD-Spleen-like batch labels 1 of 32 classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

from medsegzoo.errors import MedSegZooError

__all__ = ["LabeledClassesStep", "ObjectiveStep", "PartialLabelStep"]


class ObjectiveStep:
    """Skeleton of one training iteration; subclasses implement :meth:`forward_loss`."""

    def forward_loss(
        self, engine: SupervisedTrainer, batchdata: Mapping[str, Any], image: torch.Tensor, label: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Run the network and the loss; store ``engine.state.output[Keys.PRED]`` and fire
        ``FORWARD_COMPLETED``; return ``{"loss": tensor, ...detached parts}``."""
        raise NotImplementedError

    def __call__(self, engine: SupervisedTrainer, batchdata: dict[str, Any]) -> dict[str, Any]:
        """Forward, loss, backward and optimizer step on one batch."""
        if batchdata is None:
            raise MedSegZooError(f"{type(self).__name__}: empty batch")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        image, label = batch[0], batch[1]
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        engine.state.output = {Keys.IMAGE: image, Keys.LABEL: label}
        parts = self.forward_loss(engine, batchdata, image, label)
        engine.state.output[Keys.LOSS] = parts["loss"]
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if engine.amp and engine.scaler is not None:  # float16 on CUDA: scale the loss
            engine.scaler.scale(parts["loss"]).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            parts["loss"].backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        # the loss parts live beside the output: MONAI decollates the output per sample
        engine.state.loss_parts = {k: float(torch.as_tensor(v).detach()) for k, v in parts.items()}
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output


class PartialLabelStep(ObjectiveStep):
    """The iteration of partial-label losses (``SupervisedTrainer(iteration_update=...)``).

    Calls ``engine.loss_function(outputs, label, labeled, epoch=progress)`` where ``outputs`` is
    whatever the network returns (a dict of heads for TCT), ``labeled`` the batch's multi-hot
    labeled-classes tensor and ``progress`` the fractional epoch (for ramp-ups). The loss
    function returns a tensor or a dict with ``"loss"`` and detached parts; the parts are kept in
    ``engine.state.loss_parts`` for logging. The main head's logits are stored as ``pred``.

    Args:
        labeled_key: batch key of the (B, N) labeled-classes tensor (LabeledClassesMaskd's output).
        main_key: key of the main logits when the network returns a dict (stored as ``pred``).
    """

    def __init__(self, labeled_key: str = "labeled_classes", main_key: str = "main") -> None:
        self.labeled_key = labeled_key
        self.main_key = main_key

    def forward_loss(
        self, engine: SupervisedTrainer, batchdata: Mapping[str, Any], image: torch.Tensor, label: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if self.labeled_key not in batchdata:
            raise MedSegZooError(
                f"PartialLabelStep: the batch has no {self.labeled_key!r} entry; add "
                "medsegzoo.transforms.LabeledClassesMaskd to the training transforms"
            )
        labeled = torch.as_tensor(batchdata[self.labeled_key]).to(engine.state.device)
        progress = (engine.state.iteration - 1) / (engine.state.epoch_length or 1)
        outputs = engine.inferer(image, engine.network)
        engine.state.output[Keys.PRED] = outputs[self.main_key] if isinstance(outputs, Mapping) else outputs
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        result = engine.loss_function(outputs, label, labeled, epoch=progress)
        return dict(result) if isinstance(result, Mapping) else {"loss": result}


class LabeledClassesStep(ObjectiveStep):
    """The universal model's iteration: run only the heads of classes the batch labels.

    The label holds ``ignore_value`` in the channels of classes a sample's data set does not
    label (:class:`~medsegzoo.transforms.partial.MaskUnlabeledChannelsd`); the masked loss
    gives those channels no gradient. This step passes the union of the labeled channels of the
    batch as ``classes=`` to the network (``UniversalModel.forward``) and calls
    ``loss(pred, label[:, classes])``: the same loss and gradients as running every head.

    Args:
        ignore_value: the label value marking an unlabeled channel.
        channels: train only these output channels (class extension trains the new classes'
            heads alone); None: every labeled channel.
    """

    def __init__(self, ignore_value: float = -1.0, channels: Sequence[int] | None = None) -> None:
        self.ignore_value = ignore_value
        self.channels = None if channels is None else sorted(int(c) for c in channels)

    def forward_loss(
        self, engine: SupervisedTrainer, batchdata: Mapping[str, Any], image: torch.Tensor, label: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        labeled = (label.flatten(2)[:, :, 0] != self.ignore_value).any(dim=0)  # (K,)
        if self.channels is not None:
            allowed = torch.zeros_like(labeled)
            allowed[self.channels] = True
            labeled &= allowed
        classes = torch.nonzero(labeled).flatten()
        if classes.numel() == 0:
            # nothing of this batch is labeled (e.g. no new class during extension): run one
            # head, whose channel holds ignore_value, so the loss is a zero with a graph
            classes = torch.as_tensor(self.channels[:1] if self.channels else [0], device=label.device)
        pred = engine.inferer(image, engine.network, classes=classes)
        engine.state.output[Keys.PRED] = pred
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        return {"loss": engine.loss_function(pred, label[:, classes])}
