"""Speed of medsegzoo's metrics against DeepMind ``surface-distance`` on one abdominal CT case.

Builds one synthetic 512 x 512 x 300 case (0.8 x 0.8 x 1.5 mm) with the 9 Touchstone organs
(smooth, randomly deformed ellipsoids and tubes of realistic size) and a prediction of each
organ (shifted, differently deformed), then computes DSC, NSD (FLARE22 tolerances), HD95 and
ASSD for all 9 classes twice in this one process:

* baseline: DeepMind per class: ``gt == c``, ``pred == c``, ``compute_dice_coefficient``,
  ``compute_surface_distances``, ``compute_surface_dice_at_tolerance``,
  ``compute_robust_hausdorff(., 95)``, ``compute_average_surface_distance``;
* ours: :func:`medsegzoo.evaluation.metrics.compute_case_metrics` on the two label maps.

It checks that the values agree (DSC exactly, NSD to 1e-6, HD95/ASSD to 1e-6 relative) and
prints both times (best of ``--repeats``) and their ratio. Run::

    .venv/bin/python benchmarks/bench_metrics.py
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

TOUCHSTONE9 = ("spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta", "postcava", "pancreas")

# centre (mm) and semi-axes (mm) of each organ in a 410 x 410 x 450 mm field of view;
# tubes ("aorta", "postcava") are (x, y) centre, radius and z range
ELLIPSOIDS = {
    "liver": ((140, 200, 300), (85, 75, 70)),
    "spleen": ((290, 240, 310), (45, 35, 55)),
    "kidney_right": ((150, 265, 215), (30, 28, 55)),
    "kidney_left": ((265, 265, 225), (30, 28, 55)),
    "gallbladder": ((170, 150, 250), (18, 18, 35)),
    "stomach": ((250, 165, 320), (60, 45, 55)),
    "pancreas": ((220, 210, 255), (70, 15, 18)),
}
TUBES = {"aorta": ((210, 250), 12, (80, 420)), "postcava": ((182, 245), 11, (100, 400))}


def _wave_field(rng: np.random.Generator, size_mm: np.ndarray, terms: int = 4):
    """A smooth random field in [-1, 1]-ish: a sum of separable low-frequency waves (cheap on sparse grids)."""
    k = rng.uniform(0.5, 2.0, (terms, 3)) * 2 * np.pi / size_mm
    phase = rng.uniform(0, 2 * np.pi, (terms, 3))
    weight = rng.uniform(-1, 1, terms) / np.sqrt(terms)

    def field(x, y, z):
        return sum(w * np.sin(kk[0] * x + ph[0]) * np.sin(kk[1] * y + ph[1]) * np.sin(kk[2] * z + ph[2]) for w, kk, ph in zip(weight, k, phase))

    return field


def _paint(label: np.ndarray, value: int, implicit, box_mm: np.ndarray, spacing: np.ndarray) -> None:
    lo = np.maximum(np.floor(box_mm[0] / spacing).astype(int), 0)
    hi = np.minimum(np.ceil(box_mm[1] / spacing).astype(int) + 1, label.shape)
    grids = np.meshgrid(*[np.arange(a, b) * s for a, b, s in zip(lo, hi, spacing)], indexing="ij", sparse=True)
    inside = implicit(*grids) < 0
    region = label[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    region[inside] = value


def make_case(shape: tuple[int, int, int], spacing: tuple[float, float, float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth and predicted uint8 label maps (Touchstone 9 organs, values 1..9).

    Each organ is an ellipsoid (or a tube) whose surface is pushed in and out by a smooth
    random field; its prediction is shifted by ~1.5 mm and deformed by a second field.
    """
    rng = np.random.default_rng(seed)
    sp = np.asarray(spacing, dtype=np.float64)
    scale = np.asarray(shape) * sp / np.array([410.0, 410.0, 450.0])  # fit the layout to the field of view
    gt = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    for value, name in enumerate(TOUCHSTONE9, start=1):
        shift = rng.normal(0.0, 1.5, 3)
        if name in ELLIPSOIDS:
            centre, radii = (np.asarray(v, float) * scale for v in ELLIPSOIDS[name])
            shape_field, error_field = _wave_field(rng, 2 * radii), _wave_field(rng, radii)
            for target, extra in ((gt, 0.0), (pred, 1.0)):
                c = centre + extra * shift

                def implicit(x, y, z, c=c, r=radii, extra=extra, shape_field=shape_field, error_field=error_field):
                    u, v, w = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
                    deform = 0.25 * shape_field(x, y, z) + extra * 0.08 * error_field(x, y, z)
                    return u * u + v * v + w * w - 1 + deform

                _paint(target, value, implicit, np.stack([c - 1.4 * radii, c + 1.4 * radii]), sp)
        else:
            (cx, cy), radius, (z0, z1) = TUBES[name]
            cx, cy, radius, z0, z1 = cx * scale[0], cy * scale[1], radius * scale[0], z0 * scale[2], z1 * scale[2]
            bend = rng.uniform(5, 15)
            for target, extra in ((gt, 0.0), (pred, 1.0)):
                x0, y0, top = cx + extra * shift[0], cy + extra * shift[1], z1 + extra * 3 * shift[2]

                def implicit(x, y, z, x0=x0, y0=y0, r=radius, top=top, extra=extra, bend=bend, z0=z0):
                    radial = np.hypot(x - x0 - bend * np.sin(z / 60), y - y0) / (r * (1 + 0.1 * extra * np.sin(z / 13))) - 1
                    return np.maximum(radial, np.maximum(z0 - z, z - top))

                box = np.array([[x0 - bend - 2 * radius, y0 - 2 * radius, z0 - 5], [x0 + bend + 2 * radius, y0 + 2 * radius, top + 5]])
                _paint(target, value, implicit, box, sp)
    return gt, pred


def deepmind_metrics(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...], tolerances: dict[str, float]) -> list[dict[str, float]]:
    """DSC, NSD, HD95 and ASSD per class with DeepMind ``surface-distance`` (the baseline)."""
    import surface_distance as sd

    rows = []
    for value, name in enumerate(TOUCHSTONE9, start=1):
        g, p = gt == value, pred == value
        dsc = sd.compute_dice_coefficient(g, p)
        dist = sd.compute_surface_distances(g, p, spacing)
        nsd = sd.compute_surface_dice_at_tolerance(dist, tolerances[name])
        hd95 = sd.compute_robust_hausdorff(dist, 95)
        to_pred, to_gt = sd.compute_average_surface_distance(dist)
        area_gt, area_pred = np.sum(dist["surfel_areas_gt"]), np.sum(dist["surfel_areas_pred"])
        assd = (to_pred * area_gt + to_gt * area_pred) / (area_gt + area_pred)
        rows.append({"class": name, "dsc": dsc, "nsd": nsd, "hd95": hd95, "assd": assd})
    return rows


def ours(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...], tolerances: dict[str, float]) -> list[dict]:
    """The same metrics with medsegzoo."""
    from medsegzoo.evaluation.metrics import compute_case_metrics

    return compute_case_metrics(pred, gt, spacing, dict(enumerate(TOUCHSTONE9, start=1)), tolerances, convention="aeval")


def _best_time(fn, repeats: int):
    """Best wall-clock and best CPU time of ``repeats`` calls, and the last result.

    CPU time (this process only) is printed beside wall time because a shared machine's
    load inflates wall time; both baselines and ours are single-threaded.
    """
    wall, cpu, result = math.inf, math.inf, None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, result


def compare(reference: list[dict], candidate: list[dict]) -> float:
    """Largest relative difference; raises AssertionError past the tolerances."""
    worst = 0.0
    for ref, got in zip(reference, candidate, strict=True):
        assert ref["class"] == got["class"]
        assert ref["dsc"] == got["dsc"], (ref, got)
        assert abs(ref["nsd"] - got["nsd"]) <= 1e-6, (ref, got)
        for m in ("nsd", "hd95", "assd"):
            rel = abs(ref[m] - got[m]) / max(abs(ref[m]), 1e-12)
            assert m == "nsd" or rel <= 1e-6, (m, ref, got)
            worst = max(worst, rel)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.8, 0.8, 1.5))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from medsegzoo.evaluation.conventions import NSD_TOLERANCES_MM

    shape, spacing = tuple(args.shape), tuple(args.spacing)
    tolerances = {name: NSD_TOLERANCES_MM["flare22"][name] for name in TOUCHSTONE9}
    start = time.perf_counter()
    gt, pred = make_case(shape, spacing, args.seed)
    print(f"case: {shape} voxels at {spacing} mm, 9 organs, built in {time.perf_counter() - start:.1f} s")
    t_ours, cpu_ours, got = _best_time(lambda: ours(gt, pred, spacing, tolerances), args.repeats)
    t_ref, cpu_ref, ref = _best_time(lambda: deepmind_metrics(gt, pred, spacing, tolerances), args.repeats)
    worst = compare(ref, got)
    print(f"{'class':<14} {'DSC':>7} {'NSD':>7} {'HD95 mm':>8} {'ASSD mm':>8}")
    for row in got:
        print(f"{row['class']:<14} {row['dsc']:7.4f} {row['nsd']:7.4f} {row['hd95']:8.3f} {row['assd']:8.3f}")
    print(f"values agree with DeepMind: DSC identical, largest relative difference of NSD/HD95/ASSD {worst:.1e}")
    print(f"best of {args.repeats}:                wall s    CPU s")
    print(f"DeepMind surface-distance  {t_ref:8.3f} {cpu_ref:8.3f}")
    print(f"medsegzoo                  {t_ours:8.3f} {cpu_ours:8.3f}")
    print(f"speed-up                   {t_ref / t_ours:7.1f}x {cpu_ref / cpu_ours:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
