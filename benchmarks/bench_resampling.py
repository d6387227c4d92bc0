"""nnU-Net-style resampling of one CT: scipy's 3-D zoom against our separable zoom.

Baseline: ``scipy.ndimage.zoom`` on the whole volume (what ``skimage.transform.resize`` and
so nnU-Net's preprocessing run), in the same process, on the same array. Ours:
``medsegzoo.transforms.resampling._zoom``, the same spline zoom applied one axis at a time as
a sparse matrix. Each is timed ``--repeats`` times, interleaved; the median is printed with
the ratio and the largest difference between the two outputs. The case is STU-Net's inference
input: a 512 x 512 x 300 CT at 0.8 x 0.8 x 2.5 mm going to the CPU recipe's 2.5 mm (order 3
for the image), and the label map of a training case (order 1 per label, 6 labels). Run::

    .venv/bin/python benchmarks/bench_resampling.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from medsegzoo.transforms.resampling import _zoom


def scipy_zoom(volume: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    factors = [n / o for n, o in zip(shape, volume.shape)]
    return ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True)


def timed(step: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = step()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
    parser.add_argument("--spacing", type=float, nargs=3, default=[0.8, 0.8, 2.5])
    parser.add_argument("--target", type=float, nargs=3, default=[2.5, 2.5, 2.5])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    # smooth intensities (a CT is not white noise: the spline's overshoot stays realistic)
    image = ndimage.uniform_filter(rng.standard_normal(args.shape).astype(np.float32), 5)
    shape = tuple(int(round(n * s / t)) for n, s, t in zip(args.shape, args.spacing, args.target))
    mask = (ndimage.uniform_filter(rng.random(args.shape, dtype=np.float32), 9) > 0.5).astype(np.float32)
    ratios = []
    for name, volume, order in (("image, cubic", image, 3), ("one label's mask, linear", mask, 1)):
        baseline, ours, diff = [], [], 0.0
        for _ in range(args.repeats):
            seconds, reference = timed(lambda: scipy_zoom(volume, shape, order))
            baseline.append(seconds)
            seconds, out = timed(lambda: _zoom(volume, shape, order))
            ours.append(seconds)
            diff = max(diff, float(np.abs(out - reference).max()))
        ratio = statistics.median(baseline) / statistics.median(ours)
        ratios.append(ratio)
        print(f"{name}: {list(args.shape)} -> {list(shape)}: scipy {statistics.median(baseline):.2f} s, "
              f"ours {statistics.median(ours):.2f} s, {ratio:.2f}x, max |difference| {diff:.2e}", flush=True)
    print(f"resampling speedup min {min(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
