"""``medsegzoo predict``: segment CT/MR images with a bundle, in one command.

Examples::

    medsegzoo predict bundles/stunet_cross_dataset_evaluation ct.nii.gz --out seg/
    medsegzoo predict zoo_bundles/tct_partial_label_segmentation scans/ --out seg/ --device cpu --masks
    medsegzoo predict my_bundle dicom/series_3/ --out seg/ --config cpu.json --fast

INPUT is a NIfTI file, a folder of NIfTI files, or a folder holding one DICOM series. For each
case the output is ``<out>/<case>.nii.gz``, a label map on the input's own grid (same shape,
affine and orientation; a DICOM series' geometry as ITK reads it), with ``--masks`` also
``<out>/<case>/segmentations/<class>.nii.gz``, and ``<out>/summary.json`` with the time and the
volume of every class in mL, which are also printed.

The bundle's own ``configs/inference.json`` runs underneath (with the inputs as a temporary
datalist): its fast path is on by default (bf16 autocast on CPU, fp16/bf16 on CUDA, windows
outside the body skipped). ``--fast`` also turns test-time mirroring off (STU-Net: 8x fewer
network passes, at a small cost in accuracy). ``--config`` merges more configs of the bundle
(e.g. ``cpu.json`` for weights trained with the CPU recipe). The bundle folder may be one
fetched with ``medsegzoo zoo download``.

Everything is checked before anything is written: each input (readable, 3D), the bundle's
weights, the device (``--device cuda`` needs a CUDA device).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from tqdm import tqdm

from medsegzoo.inference.bundle_predict import BundlePredictor, CaseResult, summary
from medsegzoo.inference.inputs import collect_inputs
from medsegzoo.utils.atomic import atomic_write_json, check_output_path

HELP = "segment NIfTI files or a DICOM series with a bundle (label map on the input grid, volumes in mL)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``predict`` arguments to a (sub-)parser."""
    parser.description = __doc__.split("\n\n")[0]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("bundle", metavar="BUNDLE_DIR", help="bundle folder (configs/inference.json, models/model.pt)")
    parser.add_argument("input", metavar="INPUT", help="NIfTI file, folder of NIfTI files, or DICOM series folder")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto (default: CUDA when present), cpu or cuda")
    parser.add_argument("--fast", action="store_true", help="test-time mirroring off (bundles that mirror)")
    parser.add_argument("--masks", action="store_true", help="also write one mask per class")
    parser.add_argument("--config", action="append", default=[], metavar="NAME",
                        help="more bundle configs merged after inference.json (repeatable), e.g. cpu.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _case_lines(result: CaseResult) -> list[str]:
    """The summary lines of one case: time, output, windows, volume per predicted class."""
    lines = [f"{result.case_id}: {result.seconds:.1f} s -> {result.label_map}"]
    if result.windows_computed or result.windows_skipped:
        total = result.windows_computed + result.windows_skipped
        lines.append(f"  windows: {result.windows_computed} of {total} computed, "
                     f"{result.windows_skipped} skipped outside the body")
    volumes = [(name, ml) for name, ml in result.volumes_ml.items() if ml > 0]
    lines.extend(f"  {name:<32s} {ml:10.1f} mL" for name, ml in volumes)
    if not volumes:
        lines.append("  no class predicted")
    return lines


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""
    out = check_output_path(args.out, folder=True)
    predictor = BundlePredictor(args.bundle, configs=args.config, device=args.device, fast=args.fast,
                                class_masks=args.masks, progress=not args.quiet)
    predictor.check()
    with tempfile.TemporaryDirectory(prefix="medsegzoo_predict_") as work:
        cases = collect_inputs(args.input, work)
        print(f"{len(cases)} case(s) from {args.input}; bundle {predictor.describe()}", flush=True)
        bar = None
        if not args.quiet:
            bar = tqdm(total=len(cases), desc="cases", unit="case", file=sys.stderr, position=0)

        def on_case(result: CaseResult) -> None:
            text = "\n".join(_case_lines(result))
            if bar is None:
                print(text, flush=True)
            else:
                bar.update(1)
                bar.write(text, file=sys.stdout)

        start = time.perf_counter()
        results = predictor.run(cases, out, work, on_case=on_case)
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
    atomic_write_json(out / "summary.json", summary(results, seconds))
    print(f"{len(results)} case(s) in {seconds:.1f} s; summary: {out / 'summary.json'}")
    return 0
