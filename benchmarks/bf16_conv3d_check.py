"""Checks the CPU's bf16 ``conv3d`` weight gradient against float32, with and without our guard.

oneDNN's bf16 3D convolution on the CPU (seen with torch 2.14.1, oneDNN 3.12) returns a wrong
weight gradient when the input's first spatial axis is shorter than the kernel along it; the
forward pass and the input gradient stay right. :func:`medsegzoo.engines.precision.keep_shallow_conv3d_in_float32`
runs those convolutions in float32. This script prints, per input shape and kernel, the
relative error of the bf16 weight gradient (max |bf16 - fp32| / max |fp32|) for the plain
convolution and the guarded one, and ends with the worst of each; a correct bf16 kernel gives
errors around 5e-3.

    .venv/bin/python benchmarks/bf16_conv3d_check.py
"""

from __future__ import annotations

import sys

import torch

from medsegzoo.engines.precision import keep_shallow_conv3d_in_float32

CASES = [  # (kernel, input depth, height, width)
    (3, 1, 2, 2), (3, 2, 2, 2), (3, 2, 4, 4), (3, 2, 32, 32), (3, 3, 3, 3), (3, 4, 2, 2), (3, 6, 4, 4),
    (5, 2, 4, 4), (5, 3, 4, 4), (5, 4, 4, 4), (5, 5, 4, 4),
]


def weight_grad_error(kernel: int, shape: tuple[int, int, int], guard: bool, channels: int = 32) -> float:
    """Relative error of the bf16-autocast weight gradient against float32 (worst of 3 tries)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(channels, channels, kernel, padding=kernel // 2)
    if guard:
        keep_shallow_conv3d_in_float32(conv)
    x = torch.randn(2, channels, *shape)
    conv(x).sum().backward()
    reference = conv.weight.grad.clone()
    worst = 0.0
    for _ in range(3):
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
        out.float().sum().backward()
        error = ((conv.weight.grad - reference).abs().max() / reference.abs().max()).item()
        worst = max(worst, error if error == error else float("inf"))  # NaN counts as the worst
    return worst


def main() -> int:
    print(f"torch {torch.__version__}; relative error of the bf16 conv3d weight gradient against float32")
    print("| kernel | input D x H x W | plain bf16 | guarded |")
    print("|---|---|---|---|")
    plain_worst = guarded_worst = 0.0
    for kernel, *shape in CASES:
        plain = weight_grad_error(kernel, tuple(shape), guard=False)
        guarded = weight_grad_error(kernel, tuple(shape), guard=True)
        plain_worst, guarded_worst = max(plain_worst, plain), max(guarded_worst, guarded)
        print(f"| {kernel}^3 | {'x'.join(map(str, shape))} | {plain:.3g} | {guarded:.3g} |", flush=True)
    print(f"worst relative error: plain bf16 {plain_worst:.3g}, guarded {guarded_worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
