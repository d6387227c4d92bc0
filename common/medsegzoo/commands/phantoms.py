"""``medsegzoo phantoms``: write synthetic CT/MR phantoms in a public data set layout.

Examples::

    medsegzoo phantoms data/btcv --layout btcv --cases 4 --size 64 --site 0 --seed 0
    medsegzoo phantoms data/kits --layout kits19 --cases 6 --site 1 --seed 1
    medsegzoo phantoms data/spleen --layout msd_spleen --cases 3 --no-tumors
    medsegzoo phantoms data/chaos --layout chaos --modality MR --cases 2
    medsegzoo phantoms data/la --layout la --labeled 4 --unlabeled 12 --size 48
    medsegzoo phantoms --list-layouts

The folder is written as the public download is distributed (file names, folder tree, label
values of that data set, only the classes it labels), so ``medsegzoo datalist LAYOUT OUT``
reads it back. OUT must be missing or empty unless ``--overwrite``; the data set is written
into a temporary folder and renamed at the end, so an error leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import time

from medsegzoo.data.phantoms.layouts import list_phantom_layouts, write_phantom_dataset
from medsegzoo.errors import MedSegZooError

HELP = "write synthetic CT/MR phantoms in a public data set layout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``phantoms`` arguments to a (sub-)parser."""
    parser.description = __doc__.split("\n\n")[0]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("out", nargs="?", help="folder to create")
    parser.add_argument("--layout", help="public layout to write (see --list-layouts)")
    parser.add_argument(
        "--cases", type=int, default=None, help="number of labeled cases (default 4)"
    )
    parser.add_argument(
        "--labeled", type=int, default=None, help="same as --cases (semi-supervised wording)"
    )
    parser.add_argument(
        "--unlabeled",
        type=int,
        default=0,
        help="images without labels, where the layout keeps them (default 0)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=64,
        help="field of view in nominal 1 mm voxels per axis (default 64)",
    )
    parser.add_argument(
        "--site",
        type=int,
        default=0,
        help="acquisition site: spacing, FOV, intensities, noise, orientation (default 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    parser.add_argument(
        "--modality", choices=("CT", "MR", "ct", "mr"), help="CT or MR (default: the layout's)"
    )
    parser.add_argument(
        "--tumors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw lesions (default: yes)",
    )
    parser.add_argument(
        "--tumor-probability",
        type=float,
        default=None,
        help="probability that a case has tumours (default: the layout's)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it is not empty")
    parser.add_argument(
        "--list-layouts", action="store_true", help="print the layout names and exit"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the layout folder")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""

    if args.list_layouts:
        print("\n".join(list_phantom_layouts()))
        return 0
    if not args.out or not args.layout:
        raise MedSegZooError("phantoms needs OUT and --layout (see --list-layouts)")
    if args.cases is not None and args.labeled is not None and args.cases != args.labeled:
        raise MedSegZooError(
            f"--cases {args.cases} and --labeled {args.labeled} disagree; give one of them"
        )
    cases = (
        args.labeled if args.labeled is not None else (args.cases if args.cases is not None else 4)
    )
    start = time.perf_counter()
    root = write_phantom_dataset(
        args.out,
        args.layout,
        cases=cases,
        size=args.size,
        site=args.site,
        seed=args.seed,
        modality=args.modality.upper() if args.modality else None,
        tumors=args.tumors,
        unlabeled=args.unlabeled,
        tumor_probability=args.tumor_probability,
        overwrite=args.overwrite,
        progress=None if args.quiet else print,
    )
    if not args.quiet:
        total = cases + args.unlabeled
        elapsed = time.perf_counter() - start
        print(f"wrote {total} {args.layout} phantom case(s) ({cases} labeled) in {elapsed:.1f} s")
    print(root)
    return 0
