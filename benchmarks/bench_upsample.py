"""bf16 trilinear upsampling on the CPU: PyTorch's kernel against ``medsegzoo.networks.upsample``.

Baseline: ``F.interpolate(mode="trilinear")`` on the same bf16 tensors, in the same process
(the fast path switched off by emptying ``upsample._LOW_PRECISION``). Measured, each as the
median of ``--repeats`` timings:

* the networks whose decoders upsample trilinearly, in bf16 autocast at the CPU recipes'
  patch (48^3): one inference call of ``--batch`` windows (no gradient), and one training
  step (forward + backward of a sum);
* their outputs' agreement: the share of voxels whose argmax is the same with both kernels.

The last line reads ``upsample speedup min X.XX (...), argmax agreement min Y.YYYY``.
Run::

    .venv/bin/python benchmarks/bench_upsample.py
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from medsegzoo.networks import upsample
from medsegzoo.networks.tct_unet import TCTUNet
from medsegzoo.networks.vnet_dual import DualDecoderVNet

# name -> (network, keyword arguments of its training forward)
NETWORKS: dict[str, tuple[Callable[[], torch.nn.Module], dict[str, Any]]] = {
    # the TCT recipe's network (5 organs, with its auxiliary heads in training)
    "TCT U-Net": (lambda: TCTUNet(in_channels=1, num_classes=5, aux_heads=True), {}),
    # the TCSeg recipe's network (left atrium); its inference runs decoder 0 only (transposed
    # convolutions), so only training upsamples trilinearly (decoder 1)
    "TCSeg dual-decoder V-Net": (lambda: DualDecoderVNet(in_channels=1, out_channels=2), {"return_all": True}),
}


def tensors_of(out: Any) -> list[torch.Tensor]:
    """Every tensor of a network output (a tensor, a dict or a named tuple of them)."""
    if torch.is_tensor(out):
        return [out]
    values = out.values() if isinstance(out, dict) else out
    return [t for v in values for t in tensors_of(v)]


def median_seconds(step: Callable[[], object], repeats: int) -> float:
    step()  # warm-up (oneDNN picks its kernels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, patch {args.patch}^3, batch {args.batch}")
    fast_dtypes = upsample._LOW_PRECISION
    x = torch.randn(args.batch, 1, *(3 * [args.patch]))
    speedups, agreements = [], []
    print("| network | kernel | inference call (s) | training step (s) |\n|---|---|---|---|")
    for name, (build, train_kwargs) in NETWORKS.items():
        initial = build()
        results = {}
        for kernel, dtypes in (("PyTorch", ()), ("ours", fast_dtypes)):
            upsample._LOW_PRECISION = dtypes
            net = copy.deepcopy(initial)  # training steps update normalisation statistics

            def infer() -> torch.Tensor:
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                    net.eval()
                    return net(x)

            def train() -> None:
                net.train()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = net(x, **train_kwargs)
                sum(t.float().sum() for t in tensors_of(out)).backward()
                net.zero_grad(set_to_none=True)

            output = infer()
            results[kernel] = (median_seconds(infer, args.repeats), median_seconds(train, args.repeats), output)
            print(f"| {name} | {kernel} | {results[kernel][0]:.3f} | {results[kernel][1]:.3f} |", flush=True)
        upsample._LOW_PRECISION = fast_dtypes
        base, ours = results["PyTorch"], results["ours"]
        agree = float((base[2].argmax(1) == ours[2].argmax(1)).float().mean())
        speedups += [base[0] / ours[0], base[1] / ours[1]]
        agreements.append(agree)
        print(f"| {name} | speed-up | {base[0] / ours[0]:.2f}x | {base[1] / ours[1]:.2f}x |  argmax agreement {agree:.4f}")
    print(f"\nupsample speedup min {min(speedups):.2f} (inference calls and training steps), "
          f"argmax agreement min {min(agreements):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
