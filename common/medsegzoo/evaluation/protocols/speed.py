"""Pipeline speed and peak memory, reported the Touchstone way.

Touchstone reports the time of the *whole* pipeline per volume (load, preprocess, infer,
save) normalised by the scanned volume, in microseconds per mm^3 (its bar: faster than
1e6 mm^3 per second, i.e. below 1 µs/mm^3), with the peak memory beside it. This module
measures a block of code (:func:`measure_resources`) and turns timings and volumes into
those numbers and a table.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medsegzoo.errors import DataValidationError

# Touchstone's speed requirement: at least 1e6 mm^3 per second -> at most 1 µs per mm^3
TOUCHSTONE_MAX_US_PER_MM3 = 1.0

__all__ = [
    "TOUCHSTONE_MAX_US_PER_MM3",
    "ResourceUsage",
    "format_bytes",
    "format_speed",
    "measure_resources",
    "microseconds_per_mm3",
    "speed_table",
    "volume_mm3",
]


def volume_mm3(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Scanned volume in mm^3: number of voxels times the voxel volume.

    Args:
        shape: spatial shape of the image (voxels per axis).
        spacing: voxel size in mm per axis, same length.

    Raises:
        DataValidationError: lengths differ or a spacing is not positive.
    """
    if len(shape) != len(spacing):
        raise DataValidationError(f"shape {tuple(shape)} and spacing {tuple(spacing)} have different lengths")
    if any(float(s) <= 0 for s in spacing):
        raise DataValidationError(f"spacing must be positive, got {tuple(spacing)}")
    return float(np.prod(np.asarray(shape, dtype=float)) * np.prod(np.asarray(spacing, dtype=float)))


def microseconds_per_mm3(seconds: float, volume: float) -> float:
    """Time per volume in µs/mm^3 (``seconds * 1e6 / volume``).

    Raises:
        DataValidationError: non-positive volume or negative time.
    """
    if volume <= 0 or seconds < 0:
        raise DataValidationError(f"speed needs a positive volume and a non-negative time, got {seconds} s for {volume} mm^3")
    return seconds * 1e6 / volume


def format_speed(us_per_mm3: float) -> str:
    """``"0.42 µs/mm³ (2.38 M mm³/s)"``."""
    if not np.isfinite(us_per_mm3) or us_per_mm3 <= 0:
        return "n/a"
    rate = 1e6 / us_per_mm3
    return f"{us_per_mm3:.3g} µs/mm³ ({rate / 1e6:.3g} M mm³/s)"


def format_bytes(n: float | None) -> str:
    """Human-readable size with binary units (``"1.5 GiB"``); ``"n/a"`` for None/NaN."""
    if n is None or not np.isfinite(n):
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


@dataclass
class ResourceUsage:
    """What :func:`measure_resources` measured (filled when the block ends).

    Attributes:
        wall_s: wall-clock seconds of the block.
        peak_rss_bytes: peak resident memory of the process during the block (None when
            the platform offers no way to read it).
        peak_cuda_bytes: peak CUDA memory allocated by torch during the block (None
            without torch or CUDA).
        rss_method: how the peak was read: ``"VmHWM"`` (kernel high-water mark reset at
            the start of the block), ``"sampled"`` (polled every few ms: may miss
            short spikes) or ``"unavailable"``.
    """

    wall_s: float = float("nan")
    peak_rss_bytes: int | None = None
    peak_cuda_bytes: int | None = None
    rss_method: str = "unavailable"


_STATUS = Path("/proc/self/status")


def _status_kib(field_name: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_high_water_mark() -> bool:
    # Linux >= 4.0: writing "5" to clear_refs resets VmHWM to the current RSS, which makes
    # the kernel's own peak counter measure this block alone (no sampling gaps)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    # a kernel (or sandbox) may accept the write and keep the old peak: then the counter would
    # report the whole process's peak, so the caller samples instead (4 MiB slack for growth
    # between the two reads)
    return hwm is not None and rss is not None and hwm <= rss + 4096


def _cuda_torch():
    torch = sys.modules.get("torch")  # never import torch here: evaluation must not need it
    if torch is not None and torch.cuda.is_available():
        return torch
    return None


@contextlib.contextmanager
def measure_resources(sample_interval_s: float = 0.005) -> Iterator[ResourceUsage]:
    """Measure wall time, peak RSS and peak CUDA memory of the enclosed block.

    Example::

        with measure_resources() as usage:
            run_pipeline(case)
        print(usage.wall_s, format_bytes(usage.peak_rss_bytes))

    Args:
        sample_interval_s: polling period when the kernel high-water mark cannot be reset.

    Yields:
        A :class:`ResourceUsage` that is filled when the block exits (also on error).
    """
    usage = ResourceUsage()
    torch = _cuda_torch()
    if torch is not None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    use_hwm = _reset_high_water_mark()
    stop = threading.Event()
    sampled = [0]
    sampler: threading.Thread | None = None
    if not use_hwm and _status_kib("VmRSS") is not None:

        def poll() -> None:
            while not stop.is_set():
                sampled[0] = max(sampled[0], _status_kib("VmRSS") or 0)
                stop.wait(sample_interval_s)

        sampler = threading.Thread(target=poll, name="medsegzoo-rss-sampler", daemon=True)
        sampler.start()
    start = time.perf_counter()
    try:
        yield usage
    finally:
        if torch is not None:
            torch.cuda.synchronize()
        usage.wall_s = time.perf_counter() - start
        if use_hwm:
            usage.peak_rss_bytes = (_status_kib("VmHWM") or 0) * 1024
            usage.rss_method = "VmHWM"
        elif sampler is not None:
            stop.set()
            sampler.join()
            sampled[0] = max(sampled[0], _status_kib("VmRSS") or 0)
            usage.peak_rss_bytes = sampled[0] * 1024
            usage.rss_method = "sampled"
        elif os.name == "posix":
            import resource  # whole-process peak: an upper bound of the block's peak

            usage.peak_rss_bytes = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * (1 if sys.platform == "darwin" else 1024)
            usage.rss_method = "ru_maxrss"
        if torch is not None:
            usage.peak_cuda_bytes = int(torch.cuda.max_memory_allocated())


def speed_table(records: pd.DataFrame) -> pd.DataFrame:
    """Per-algorithm speed summary from per-case timings.

    Args:
        records: one row per (algorithm, case) with ``seconds`` and either ``volume_mm3``
            or ``shape`` and ``spacing`` (sequences); optional ``peak_rss_bytes``,
            ``peak_cuda_bytes`` and ``algorithm``.

    Returns:
        One row per algorithm: ``cases``, ``mean µs/mm³``, ``median µs/mm³``,
        ``total s``, ``peak RSS``, ``peak CUDA`` (the largest over cases, formatted),
        ``meets Touchstone (<1 µs/mm³)``.

    Raises:
        DataValidationError: missing ``seconds`` or volume columns.
    """
    if "seconds" not in records.columns:
        raise DataValidationError(f"speed records need a 'seconds' column, got {list(records.columns)}")
    r = records.copy()
    if "algorithm" not in r.columns:
        r["algorithm"] = "prediction"
    if "volume_mm3" not in r.columns:
        if not {"shape", "spacing"} <= set(r.columns):
            raise DataValidationError("speed records need 'volume_mm3' or both 'shape' and 'spacing'")
        r["volume_mm3"] = [volume_mm3(s, p) for s, p in zip(r["shape"], r["spacing"])]
    r["us_per_mm3"] = [microseconds_per_mm3(s, v) for s, v in zip(r["seconds"], r["volume_mm3"])]
    rows = []
    for algo, g in r.groupby("algorithm", sort=False):
        mean = float(g["us_per_mm3"].mean())
        rows.append(
            {
                "algorithm": algo,
                "cases": len(g),
                "mean µs/mm³": mean,
                "median µs/mm³": float(g["us_per_mm3"].median()),
                "total s": float(g["seconds"].sum()),
                "peak RSS": format_bytes(g["peak_rss_bytes"].max()) if "peak_rss_bytes" in g else "n/a",
                "peak CUDA": format_bytes(g["peak_cuda_bytes"].max()) if "peak_cuda_bytes" in g else "n/a",
                "meets Touchstone (<1 µs/mm³)": mean < TOUCHSTONE_MAX_US_PER_MM3,
            }
        )
    return pd.DataFrame(rows).set_index("algorithm")
