"""``medsegzoo zoo``: pack, serve, download and export bundles.

Examples::

    medsegzoo zoo pack --bundles-dir bundles --out zoo --base-url https://example.org/zoo
    medsegzoo zoo pack --out zoo --base-url http://127.0.0.1:8765 && medsegzoo zoo serve zoo --port 8765
    medsegzoo zoo serve zoo --port 8765
    medsegzoo zoo download tct_partial_label_segmentation --index http://127.0.0.1:8765/model_info.json --bundle-dir ./models
    medsegzoo zoo download tct_partial_label_segmentation --version 0.1.0 --index zoo/model_info.json --bundle-dir ./models

``pack`` writes ``<name>_v<version>.zip`` (one top-level folder named after the bundle: configs,
docs, LICENSE and, when trained, models/model.pt with the files inference reads beside it),
``<zip>.sha256`` and ``model_info.json`` (MONAI model-zoo format: the sha1 ``checksum`` MONAI
reads, plus ``sha256``), streaming every file; a killed pack leaves no zip under a published
name. A file above the model zoo's 25 MB limit (``--max-file-mb``) is served beside the zip
(``<name>_v<version>_files/``) and named in the zip's ``large_files.yml`` with its URL and
sha256, which needs ``--base-url``. The packed metadata.json states the package versions
installed here. From the project (``--project``, default: the folder above --bundles-dir when it
is the medsegzoo project), pack builds the medsegzoo wheel into ``packages/`` and names it in
every metadata.json (``pip_requirements``, with ``--base-url``). Without ``--base-url`` the
index's sources are the zip names, resolved against wherever the index is read from.
``serve`` binds 127.0.0.1 only and answers ``Range`` requests. ``download`` picks the latest
version by version order, streams the zip to a ``.part`` file (an interrupted download resumes
when run again), verifies its sha256 (sha1 for an index without one), refuses unsafe zips,
fetches and verifies the files of ``large_files.yml``, and extracts nothing on failure. The
same zips also download with
``python -m monai.bundle download --name NAME --url http://127.0.0.1:PORT/NAME_vX.zip``
(then ``python -m monai.bundle download_large_files --bundle_path NAME`` for large files).
"""

from __future__ import annotations

import argparse
import sys

from medsegzoo.zoo.download import download_bundle
from medsegzoo.zoo.pack import INDEX_NAME, pack_zoo
from medsegzoo.zoo.serve import make_server
from medsegzoo.zoo.wheel import is_project

HELP = "pack bundles into reproducible zips + index, serve a zoo on 127.0.0.1, download with checksum"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``zoo`` sub-commands to a (sub-)parser."""
    parser.description = __doc__.split("\n\n")[0]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    sub = parser.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)

    pack = sub.add_parser("pack", help="zip every bundle and write model_info.json")
    pack.add_argument("--bundles-dir", default="bundles", help="folder of bundle folders (default: bundles)")
    pack.add_argument("--out", default="zoo", help="zoo folder (default: zoo)")
    pack.add_argument("--base-url", help="URL the zoo folder is served at (default: sources relative to the index)")
    pack.add_argument("--bundle", action="append", dest="names", help="pack only this bundle (repeatable)")
    pack.add_argument("--max-file-mb", type=float, default=25.0,
                      help="largest file a zip carries, in MB (default 25, the model zoo's limit); larger files "
                           "are served beside the zip and named in its large_files.yml")
    wheel = pack.add_mutually_exclusive_group()
    wheel.add_argument("--project", help="medsegzoo project whose wheel is built into packages/ (default: the "
                                         "folder above --bundles-dir when it is the medsegzoo project)")
    wheel.add_argument("--no-wheel", action="store_true", help="do not build the medsegzoo wheel")

    serve = sub.add_parser("serve", help="serve a zoo folder over HTTP on 127.0.0.1")
    serve.add_argument("directory", help="zoo folder")
    serve.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")

    download = sub.add_parser("download", help="download (resuming), verify (sha256) and extract a bundle")
    download.add_argument("name", help="bundle name")
    download.add_argument("--version", help="version (default: the latest)")
    download.add_argument("--index", required=True, help="model_info.json path or URL")
    download.add_argument("--bundle-dir", required=True, help="folder receiving the bundle folder")
    download.add_argument("--force", action="store_true", help="replace an existing bundle folder")


def run(args: argparse.Namespace) -> int:
    """Run ``medsegzoo zoo ACTION``; returns the exit code."""
    if args.zoo_command == "pack":
        from pathlib import Path


        project = args.project
        if project is None and not args.no_wheel:
            above = Path(args.bundles_dir).resolve().parent
            project = above if is_project(above) else None
        index = pack_zoo(args.bundles_dir, args.out, base_url=args.base_url, names=args.names,
                         project_dir=project, file_limit=int(args.max_file_mb * 1e6))
        for key, entry in index.items():
            print(f"{key}: sha256 {entry['sha256']} -> {entry['source']}")
        print(f"{args.out}/{INDEX_NAME}")
        return 0
    if args.zoo_command == "serve":

        server = make_server(args.directory, args.port)
        host, port = server.server_address[:2]
        print(f"serving {args.directory} at http://{host}:{port}/ (index: http://{host}:{port}/model_info.json); Ctrl-C stops",
              flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return 0

    target = download_bundle(args.name, args.index, args.bundle_dir, version=args.version, force=args.force)
    print(target, file=sys.stdout)
    return 0
