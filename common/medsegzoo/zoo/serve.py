"""Serve a zoo folder over HTTP on the loopback interface only.

A plain :mod:`http.server` (the standard library's static file server is all a zoo needs);
binding to 127.0.0.1 keeps it off the network: to share a zoo beyond this machine, put the
folder behind a real web server or object store and pack with ``--base-url``. The handler
also answers open-ended ``Range: bytes=N-`` requests, so an interrupted download resumes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from medsegzoo.errors import LayoutError

LOOPBACK = "127.0.0.1"


_OPEN_RANGE = re.compile(r"bytes=(\d+)-")


class ZooRequestHandler(SimpleHTTPRequestHandler):
    """Static files; a request for ``bytes=N-`` of a file gets 206 and the bytes from N on."""

    def send_head(self) -> BinaryIO | None:  # type: ignore[override]
        match = _OPEN_RANGE.fullmatch((self.headers.get("Range") or "").strip())
        path = self.translate_path(self.path)
        if match is None or not os.path.isfile(path):
            return super().send_head()  # other ranges are ignored: a full 200 answer is valid
        handle = open(path, "rb")  # noqa: SIM115 - do_GET closes it after sending
        size = os.fstat(handle.fileno()).st_size
        start = int(match.group(1))
        if start >= size:
            handle.close()
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return handle


class _QuietHandler(ZooRequestHandler):
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
    handler = functools.partial(_QuietHandler if quiet else ZooRequestHandler, directory=str(root))
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
