"""Trilinear upsampling that is fast in bfloat16 on the CPU.

PyTorch's CPU kernel of ``F.interpolate(mode="trilinear")`` is slow in bfloat16 and float16:
on 2 cores (torch 2.14) a 2x upsampling of a bf16 ``(2, 32, 24, 24, 24)`` tensor took
25.7 ms against 17.7 ms in float32. Under CPU autocast the decoder activations are bf16, so
the TCT U-Net, whose decoder upsamples trilinearly, paid for it in every window (4.3 s of 27 s
of a TCT whole-case inference, benchmarks/bench_inference.py). (The TCSeg V-Net's trilinear
decoder runs in training only, where this module keeps PyTorch's kernel; see below.)

A 2x trilinear upsampling with ``align_corners=False`` is separable: along each axis, output
voxel ``2i`` is ``0.75 x[i] + 0.25 x[i-1]`` and ``2i+1`` is ``0.75 x[i] + 0.25 x[i+1]``
(indices clamped at the borders). Three such passes of ``torch.lerp`` in bf16 took 6.2 ms
on the tensor above (4x faster). Each pass rounds
to bf16, so the result differs from the float32 kernel by bf16 rounding (at most ~2 bf16
ulps of the values), the precision the autocast network runs at anyway. float32 tensors, GPU
tensors and sizes that are not exactly twice the input keep PyTorch's kernel, so float32
outputs are unchanged.

Training keeps PyTorch's kernel too (the fast path runs only where no gradient flows back, as
in inference and validation): a whole bf16 training step gained nothing measurable (1.00x for the
TCT U-Net, 1.08x for the V-Net), and the separable backward sums its gradient pieces in bf16,
a doubt not worth taking for no gain.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["TrilinearUpsample2x", "trilinear_resize"]

_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _double_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Linear 2x upsampling of one axis (``align_corners=False``, borders clamped)."""
    n = x.shape[dim]
    if n == 1:
        return torch.cat([x, x], dim)
    before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    even = torch.lerp(x, before, 0.25)
    odd = torch.lerp(x, after, 0.25)
    return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)


def _separable_applies(x: torch.Tensor, size: list[int]) -> bool:
    """Exactly 2x along every axis, on the CPU, in bf16 or fp16, without gradients (inference)."""
    doubled = [2 * int(s) for s in x.shape[2:]] == [int(s) for s in size]
    return (doubled and x.device.type == "cpu" and x.dtype in _LOW_PRECISION
            and not (x.requires_grad and torch.is_grad_enabled()))


def _separable_double(x: torch.Tensor) -> torch.Tensor:
    for dim in range(2, x.ndim):
        x = _double_axis(x, dim)
    return x


def trilinear_resize(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="trilinear", align_corners=False)`` for a ``(B, C, D, H, W)`` tensor.

    Exactly 2x along every axis on the CPU in bf16/fp16 takes the separable path of the module
    docstring; everything else is PyTorch's kernel. A TorchScript export (the model zoo's
    ``torch.jit.script`` check) compiles PyTorch's kernel only.
    """
    if not torch.jit.is_scripting():  # (TorchScript skips this block; it cannot compile the tests)
        if _separable_applies(x, size):
            return _separable_double(x)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


class TrilinearUpsample2x(nn.Upsample):
    """``nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)``, fast in bf16 on the CPU.

    It has no parameters, so it replaces ``nn.Upsample`` without changing a state dict.
    """

    def __init__(self) -> None:
        super().__init__(scale_factor=2, mode="trilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return trilinear_resize(x, [2 * s for s in x.shape[2:]])
