"""The ``medsegzoo`` command.

Each sub-command lives in its own module under :mod:`medsegzoo.commands` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their command runs, so ``medsegzoo phantoms`` does not pay for torch
or matplotlib imports it does not need.

Every failure a user can cause ends in one line on stderr and exit code 1, never a traceback:
bad input raises :class:`~medsegzoo.errors.MedSegZooError` (its message names the file and
the problem), and an :class:`OSError` (no permission, a full disk, a file where a folder
should be, a missing folder) is printed with the path it concerns.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from medsegzoo import __version__
from medsegzoo.errors import MedSegZooError, os_error_message

# command name -> module implementing it (add a line here to add a command)
COMMANDS: dict[str, str] = {
    "phantoms": "medsegzoo.commands.phantoms",
    "datalist": "medsegzoo.commands.datalist",
    "evaluate": "medsegzoo.commands.evaluate",
    "compare": "medsegzoo.commands.compare",
    "zoo": "medsegzoo.commands.zoo",
    "import-weights": "medsegzoo.commands.import_weights",
    "predict": "medsegzoo.commands.predict",
}

# one-line help, kept here so that `medsegzoo --help` imports nothing heavy
HELP: dict[str, str] = {
    "phantoms": "write synthetic CT/MR phantoms in a public data set layout",
    "datalist": "build a MONAI datalist JSON from a data set folder in its public layout",
    "evaluate": "score predictions against ground truth (DSC, NSD, HD95, ASSD) and write a report",
    "compare": "compare several algorithms on the same cases (Touchstone statistics)",
    "zoo": "pack bundles into reproducible zips + index, serve a zoo on 127.0.0.1, download with checksum",
    "import-weights": "turn the authors' published checkpoints into a bundle's inference weights, strictly",
    "predict": "segment NIfTI files or a DICOM series with a bundle (label map on the input grid, volumes in mL)",
}


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser; only the sub-command ``load`` gets its full arguments."""
    parser = argparse.ArgumentParser(prog="medsegzoo", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medsegzoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=HELP.get(name, ""))
        if name == load:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(load=command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command])
    try:
        return int(module.run(args) or 0)
    except MedSegZooError as err:
        print(f"medsegzoo {args.command}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        # an error from write() on an open file names no file: name the command's output
        print(f"medsegzoo {args.command}: error: {os_error_message(err, getattr(args, 'out', None))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"medsegzoo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
