"""Serve a zoo folder over HTTP on the loopback interface only.

A plain :mod:`http.server` (the standard library's static file server is all a zoo needs);
binding to 127.0.0.1 keeps it off the network: to share a zoo beyond this machine, put the
folder behind a real web server or object store and pack with ``--base-url``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from medsegzoo.errors import LayoutError

LOOPBACK = "127.0.0.1"


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static file handler that logs nothing (tests and background servers)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_server(directory: str | os.PathLike, port: int = 0, quiet: bool = False) -> ThreadingHTTPServer:
    """An HTTP server for ``directory`` bound to 127.0.0.1.

    Args:
        directory: the zoo folder.
        port: TCP port (0: a free one; read it from ``server.server_address[1]``).
        quiet: do not log requests.

    Returns:
        The bound server (call ``serve_forever`` or use :func:`serving`).

    Raises:
        LayoutError: the folder does not exist.
    """
    root = Path(directory)
    if not root.is_dir():
        raise LayoutError(f"{root}: zoo folder does not exist")
    handler = functools.partial(_QuietHandler if quiet else SimpleHTTPRequestHandler, directory=str(root))
    return ThreadingHTTPServer((LOOPBACK, port), handler)


@contextlib.contextmanager
def serving(directory: str | os.PathLike, port: int = 0) -> Iterator[str]:
    """Serve ``directory`` in a background thread; yield its base URL; always shut down.

    Args:
        directory: the zoo folder.
        port: TCP port (0: a free one).

    Yields:
        ``http://127.0.0.1:<port>/``.
    """
    server = make_server(directory, port, quiet=True)
    thread = threading.Thread(target=server.serve_forever, name="medsegzoo-zoo-server", daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
