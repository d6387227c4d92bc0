"""Mixed precision on every device: bf16 autocast on the CPU, fp16 or bf16 on CUDA.

MONAI 1.6's trainers and evaluators only autocast on CUDA (``torch.autocast("cuda")``), so
their ``amp`` switch does nothing on a CPU, where bf16 autocast makes a 3D U-Net training step
2-4x faster on CPUs with AVX-512 BF16 or AMX (measured in ``benchmarks/bench_training.py``).
This module adds what is missing, once, for every bundle:

* :func:`resolve_autocast` turns a bundle's ``amp`` / ``amp_dtype`` settings and its device
  into an :class:`Autocast` policy, or a clear error naming the setting (float16 asked on a
  CPU, a dtype the device lacks). A CPU without bf16 support falls back to float32 and says so
  in the log (documented fallback: the run stays correct, only slower).
* :meth:`Autocast.wrap` runs a network's forward pass under autocast and returns its outputs
  in float32, so every loss, softmax and sliding-window aggregation downstream runs in
  float32 and the backward pass runs outside the autocast region (PyTorch's advice).
* :class:`AutocastInferer` applies that to any MONAI inferer: ``SimpleInferer`` in training,
  ``SlidingWindowInferer`` (per window; the blending buffer stays float32) in validation and
  inference.

The trainers and evaluators that use it live in :mod:`medsegzoo.engines.precision`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.inferers import Inferer

from medsegzoo.errors import MedSegZooError

__all__ = ["AMP_DTYPES", "Autocast", "AutocastInferer", "cpu_supports_bf16", "resolve_autocast", "to_float32"]

logger = logging.getLogger(__name__)

AMP_DTYPES: dict[str, torch.dtype | None] = {
    "auto": None,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def cpu_supports_bf16() -> bool:
    """Whether oneDNN has fast bf16 kernels on this CPU (AVX-512 BF16, AMX or AVX-512 emulation)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the query
        return False


@dataclasses.dataclass(frozen=True)
class Autocast:
    """A resolved mixed-precision policy.

    Attributes:
        device_type: ``"cpu"`` or ``"cuda"``.
        dtype: the autocast dtype, or None when mixed precision is off.
    """

    device_type: str = "cpu"
    dtype: torch.dtype | None = None

    @property
    def enabled(self) -> bool:
        """Whether forward passes run under autocast."""
        return self.dtype is not None

    @property
    def needs_grad_scaler(self) -> bool:
        """float16 on CUDA needs loss scaling (bf16 has float32's exponent range and does not)."""
        return self.device_type == "cuda" and self.dtype == torch.float16

    def context(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for this policy, or a no-op context when it is off."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def wrap(self, network: Callable[..., Any]) -> Callable[..., Any]:
        """A callable that runs ``network`` under autocast and returns float32 outputs.

        The result forwards attribute access to ``network`` (``.train()``, ``.eval()``,
        ``.parameters()``), so it can stand in for the module in an objective; it is not an
        ``nn.Module`` itself, so checkpoints keep the network's own parameter names.
        """
        if not self.enabled:
            return network
        return _AutocastForward(network, self)

    def describe(self) -> str:
        """One line for the log."""
        if not self.enabled:
            return "mixed precision off (float32)"
        name = str(self.dtype).replace("torch.", "")
        return f"mixed precision: {name} autocast on {self.device_type}, losses in float32"


class _AutocastForward:
    """``network`` called under autocast, outputs cast back to float32 (see :meth:`Autocast.wrap`)."""

    def __init__(self, network: Callable[..., Any], autocast: Autocast) -> None:
        self._network = network
        self._autocast = autocast

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._autocast.context():
            out = self._network(*args, **kwargs)
        return to_float32(out)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._network, name)


def to_float32(value: Any) -> Any:
    """Cast every floating-point tensor in a (nested) network output to float32.

    Handles tensors, mappings, lists, tuples (named ones included) and dataclasses; anything
    else is returned as it is. MONAI's ``MetaTensor`` keeps its metadata through ``.float()``.
    """
    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, Mapping):
        cast = {k: to_float32(v) for k, v in value.items()}
        try:
            return type(value)(cast)
        except TypeError:  # a mapping type that cannot be built from a dict
            return cast
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(to_float32(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: to_float32(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init})
    return value


def resolve_autocast(
    amp: bool | str = False,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = "auto",
    setting: str = "amp_dtype",
) -> Autocast:
    """The mixed-precision policy for a bundle's ``amp`` switch on ``device``.

    Args:
        amp: the bundle's ``amp`` switch (False: float32 everywhere).
        device: the device the network runs on.
        dtype: ``"auto"`` (bf16 on CPU; bf16 on CUDA where supported, else float16),
            ``"bfloat16"`` or ``"float16"`` (CUDA only).
        setting: the config entry named in errors.

    Returns:
        An :class:`Autocast` (disabled when ``amp`` is false, or on a CPU without bf16 support,
        which is logged as a warning).

    Raises:
        MedSegZooError: an unknown dtype name, float16 asked on a CPU, bf16 asked on a CUDA
            device that lacks it.
    """
    if isinstance(amp, str):
        amp = amp.strip().lower() in ("1", "true", "yes", "on")
    device_type = torch.device(device).type
    if device_type not in ("cpu", "cuda"):
        if amp:
            logger.warning("amp: no autocast policy for device type %r; running in float32", device_type)
        return Autocast(device_type, None)
    if not amp:
        return Autocast(device_type, None)
    if dtype is None or isinstance(dtype, str):
        key = "auto" if dtype is None else dtype.strip().lower()
        if key not in AMP_DTYPES:
            raise MedSegZooError(f"{setting} {dtype!r} is not one of {', '.join(AMP_DTYPES)}")
        wanted = AMP_DTYPES[key]
    else:
        wanted = dtype
        if wanted not in (torch.bfloat16, torch.float16):
            raise MedSegZooError(f"{setting} {dtype!r}: mixed precision uses bfloat16 or float16")
    if device_type == "cpu":
        if wanted == torch.float16:
            raise MedSegZooError(
                f"{setting} 'float16' is a CUDA setting; on the CPU mixed precision is bfloat16 "
                f"(set {setting} to 'auto' or 'bfloat16', or amp to false)"
            )
        if not cpu_supports_bf16():
            logger.warning(
                "amp: this CPU has no bf16 support in oneDNN (needs AVX-512 or AMX); training and inference "
                "run in float32 (set amp to false to silence this)"
            )
            return Autocast("cpu", None)
        return Autocast("cpu", torch.bfloat16)
    # CUDA
    if wanted is None:
        wanted = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif wanted == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise MedSegZooError(
            f"{setting} 'bfloat16': this GPU has no bf16 support; use 'float16' or 'auto'"
        )
    return Autocast("cuda", wanted)


class AutocastInferer(Inferer):
    """Any MONAI inferer with the network's forward pass under autocast (outputs in float32).

    Args:
        inferer: the inferer to run (``SimpleInferer``, ``SlidingWindowInferer``, ...).
        autocast: the policy; a disabled one makes this a transparent pass-through.
    """

    def __init__(self, inferer: Inferer, autocast: Autocast) -> None:
        super().__init__()
        self.inferer = inferer
        self.autocast = autocast

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run the wrapped inferer with an autocast forward of ``network``."""
        return self.inferer(inputs, self.autocast.wrap(network), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # roi_size, sw_batch_size, ... of the wrapped inferer stay readable
        if name == "inferer":
            raise AttributeError(name)
        return getattr(self.inferer, name)
