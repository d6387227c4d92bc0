"""MONAI's trainer and evaluator with mixed precision on the CPU as well as on CUDA.

:class:`MixedPrecisionTrainer` and :class:`MixedPrecisionEvaluator` take MONAI's arguments
plus ``amp_dtype``; ``amp`` now means "autocast on whatever device this runs on" (bf16 on a
CPU, bf16 or fp16 on CUDA, see :func:`medsegzoo.inference.autocast.resolve_autocast`).

How: the engine's inferer is wrapped in an :class:`~medsegzoo.inference.autocast.AutocastInferer`,
so the forward pass runs under autocast and returns float32; the loss, the backward pass, the
post-processing and the metrics run in float32 outside it. MONAI's own CUDA-only autocast is
switched off (``amp_kwargs={"enabled": False}``) but its ``GradScaler`` is kept for float16 on
CUDA, the one case that needs loss scaling. Custom iteration functions reach the same policy
through ``engine.inferer`` (for the network's forward) or ``engine.autocast.wrap(module)``.

Bundle config sketch::

    "amp": true, "amp_dtype": "auto",
    "trainer": {"_target_": "medsegzoo.engines.precision.MixedPrecisionTrainer",
                "amp": "@amp", "amp_dtype": "@amp_dtype", ... MONAI's arguments ...}
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.inferers import Inferer, SimpleInferer

from medsegzoo.inference.autocast import Autocast, AutocastInferer, resolve_autocast

__all__ = [
    "MixedPrecisionEvaluator",
    "MixedPrecisionTrainer",
    "autocast_engine_arguments",
    "keep_shallow_conv3d_in_float32",
]

logger = logging.getLogger(__name__)


def autocast_engine_arguments(
    device: str | torch.device, amp: bool, amp_dtype: str | None, inferer: Inferer | None, training: bool
) -> tuple[Autocast, dict[str, Any]]:
    """The policy and the MONAI engine arguments (``inferer``, ``amp``, ``amp_kwargs``) that apply it.

    Args:
        device: the engine's device.
        amp: the bundle's ``amp`` switch.
        amp_dtype: ``"auto"``, ``"bfloat16"`` or ``"float16"``.
        inferer: the engine's inferer (None: ``SimpleInferer``).
        training: a trainer (keeps MONAI's GradScaler for float16 on CUDA) or an evaluator.

    Returns:
        ``(autocast, kwargs)`` to pass on to MONAI's constructor.
    """
    autocast = resolve_autocast(amp, device, amp_dtype)
    base = inferer if inferer is not None else SimpleInferer()
    wrapped = AutocastInferer(base, autocast) if autocast.enabled else base
    # MONAI's autocast is CUDA-only and would also cover the loss: keep it off; keep its
    # GradScaler (trainers only) where float16 needs loss scaling
    scaler = training and autocast.needs_grad_scaler
    kwargs = {"inferer": wrapped, "amp": scaler, "amp_kwargs": {"enabled": False}}
    return autocast, kwargs


def _conv3d_forward(module: torch.nn.Conv3d, forward: Any, x: torch.Tensor) -> torch.Tensor:
    depth = module.dilation[0] * (module.kernel_size[0] - 1) + 1
    shallow = x.dim() == 5 and x.shape[2] < depth
    if shallow and x.device.type == "cpu" and torch.is_grad_enabled() and torch.is_autocast_enabled("cpu") \
            and torch.get_autocast_dtype("cpu") == torch.bfloat16:
        with torch.autocast("cpu", enabled=False):
            return forward(x.float()).to(torch.bfloat16)
    return forward(x)


def keep_shallow_conv3d_in_float32(network: torch.nn.Module) -> int:
    """Run the network's 3D convolutions in float32 where their input is shallower than the kernel.

    Why: oneDNN's bf16 ``conv3d`` weight gradient on the CPU (torch 2.14.1, oneDNN 3.12) is
    garbage, values up to 1e37 or NaN, whenever the input's first spatial axis is shorter than
    the kernel along it (depth 2 under a 3x3x3 kernel, depth 2-4 under 5x5x5), while the forward
    pass and the input gradient are right (``benchmarks/bf16_conv3d_check.py``). Such tensors are
    the bottleneck of a U-Net on a small or thick-slice patch: in the smoke runs the first
    clipped step turned every weight into NaN. Those convolutions are a few voxels deep, so
    float32 costs nothing measurable; every other convolution stays in bf16.

    Args:
        network: the network (wrapped ones too: every ``Conv3d`` among its modules).

    Returns:
        How many convolutions were guarded (each only once).
    """
    guarded = 0
    for module in network.modules():
        if isinstance(module, torch.nn.Conv3d) and module.kernel_size[0] > 1 and "forward" not in vars(module):
            module.forward = functools.partial(_conv3d_forward, module, module.forward)
            guarded += 1
    return guarded


class MixedPrecisionTrainer(SupervisedTrainer):
    """:class:`~monai.engines.SupervisedTrainer` whose ``amp`` also works on the CPU.

    Args:
        device: training device.
        max_epochs: epochs to train.
        train_data_loader: the training loader.
        network: the network.
        optimizer: the optimizer.
        loss_function: the loss (called with float32 predictions).
        amp: autocast the forward pass on ``device``.
        amp_dtype: ``"auto"``, ``"bfloat16"`` or ``"float16"`` (CUDA only).
        inferer: the training inferer (default ``SimpleInferer``).
        kwargs: every other argument of MONAI's ``SupervisedTrainer``.

    Attributes:
        autocast: the resolved policy (custom iteration functions use ``autocast.wrap``).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Any,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_function: Any,
        amp: bool = False,
        amp_dtype: str | None = "auto",
        inferer: Inferer | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("amp_kwargs", None)
        self.autocast, engine_args = autocast_engine_arguments(device, amp, amp_dtype, inferer, training=True)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            **engine_args,
            **kwargs,
        )
        if self.autocast.device_type == "cpu" and self.autocast.dtype == torch.bfloat16:
            keep_shallow_conv3d_in_float32(network)
        logger.info("training: %s", self.autocast.describe())


class MixedPrecisionEvaluator(SupervisedEvaluator):
    """:class:`~monai.engines.SupervisedEvaluator` whose ``amp`` also works on the CPU.

    Args:
        device: evaluation device.
        val_data_loader: the loader.
        network: the network.
        amp: autocast the forward pass (per sliding window) on ``device``.
        amp_dtype: ``"auto"``, ``"bfloat16"`` or ``"float16"`` (CUDA only).
        inferer: the inferer (default ``SimpleInferer``).
        kwargs: every other argument of MONAI's ``SupervisedEvaluator``.

    Attributes:
        autocast: the resolved policy.
    """

    def __init__(
        self,
        device: str | torch.device,
        val_data_loader: Any,
        network: torch.nn.Module,
        amp: bool = False,
        amp_dtype: str | None = "auto",
        inferer: Inferer | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("amp_kwargs", None)
        self.autocast, engine_args = autocast_engine_arguments(device, amp, amp_dtype, inferer, training=False)
        super().__init__(device=device, val_data_loader=val_data_loader, network=network, **engine_args, **kwargs)
