"""bf16 trilinear upsampling on the CPU: PyTorch's kernel against ``medsegzoo.networks.upsample``.

Baseline: ``F.interpolate(mode="trilinear")`` on the same bf16 tensors, in the same process
(the fast path switched off by emptying ``upsample._LOW_PRECISION``). Measured, each as the
median of ``--repeats`` timings:

* the networks whose decoders upsample trilinearly, in bf16 autocast at the CPU recipes'
  patch (48^3): one inference call of ``--batch`` windows (no gradient; training keeps
  PyTorch's kernel, so it is not measured here);
* their outputs' agreement: the share of voxels whose argmax is the same with both kernels.

The last line reads ``upsample speedup min X.XX (...), argmax agreement min Y.YYYY``.
Run::

    .venv/bin/python benchmarks/bench_upsample.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

from medsegzoo.networks import upsample
from medsegzoo.networks.tct_unet import TCTUNet

# the TCT recipe's network (5 organs); the TCSeg V-Net's trilinear decoder runs in training only
NETWORKS: dict[str, Callable[[], torch.nn.Module]] = {
    "TCT U-Net": lambda: TCTUNet(in_channels=1, num_classes=5),
}


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
    print("| network | kernel | inference call (s) |\n|---|---|---|")
    for name, build in NETWORKS.items():
        net = build().eval()
        results = {}
        for kernel, dtypes in (("PyTorch", ()), ("ours", fast_dtypes)):
            upsample._LOW_PRECISION = dtypes

            def infer() -> torch.Tensor:
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                    return net(x)

            output = infer()
            results[kernel] = (median_seconds(infer, args.repeats), output)
            print(f"| {name} | {kernel} | {results[kernel][0]:.3f} |", flush=True)
        upsample._LOW_PRECISION = fast_dtypes
        base, ours = results["PyTorch"], results["ours"]
        agree = float((base[1].argmax(1) == ours[1].argmax(1)).float().mean())
        speedups.append(base[0] / ours[0])
        agreements.append(agree)
        print(f"| {name} | speed-up | {base[0] / ours[0]:.2f}x |  argmax agreement {agree:.4f}")
    print(f"\nupsample speedup min {min(speedups):.2f} (inference calls), "
          f"argmax agreement min {min(agreements):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
