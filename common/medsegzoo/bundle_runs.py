"""One way to launch a bundle workflow from Python: in this process, in a subprocess, or parsed only.

Every driver of the package (the A-Eval protocols, TCSeg's multi-seed runs, the CPU-recipe and
paper-claim benchmarks, ``make demo``) and the tests describe a bundle run the same way, as a
:class:`BundleRun` (bundle folder, config files merged left to right, ``--key value``
overrides, run id), and launch it through one of three functions:

* :func:`run_in_subprocess`: ``python -m monai.bundle run RUN_ID --config_file [...] --key
  value``, exactly what a user types; the output goes to a log file (or is captured), and a
  failure raises with the command and the log tail. Use it where isolation matters (seeds,
  benchmarks that time whole runs, crash tests).
* :func:`run_in_process`: MONAI's ``monai.bundle.run`` in this Python process (the same code
  path as the command line, without the ~6 s of importing torch, MONAI and ignite again).
* :func:`run_cli_in_process`: any ``python -m monai.bundle ...`` command line parsed by the
  same ``fire`` entry point and run in this process, with its output captured and an
  exception turned into a non-zero exit status, so a caller reads it like a finished
  subprocess (the tests; a crash test that needs a hard exit still uses a real process).
* :func:`parse_bundle`: the merged configs parsed into a MONAI ``ConfigParser``, to take one
  component out (a trainer for a benchmark, a setting for a driver).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medsegzoo.errors import MedSegZooError

__all__ = [
    "BundleRun", "BundleRunError", "cli_value", "parse_bundle", "run_cli_in_process", "run_in_process",
    "run_in_subprocess",
]

LOG_TAIL_CHARS = 4000


class BundleRunError(MedSegZooError, RuntimeError):
    """A bundle command that exited with an error (the message holds the command and the log tail)."""


def cli_value(value: Any) -> str:
    """An override as MONAI's fire-based command line parses it back (Python literals)."""
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "None"
    return json.dumps(value)


@dataclasses.dataclass
class BundleRun:
    """One ``monai.bundle run`` of a bundle.

    Attributes:
        bundle: the bundle folder (``configs/`` inside).
        configs: config files merged left to right: names in ``configs/`` (``"train.json"``),
            paths relative to the bundle (with a slash), or absolute paths.
        overrides: ``key`` / ``a#b`` values (``bundle_root`` defaults to ``bundle``).
        run_id: the run target (``"training"``, ``"inference"``, ``"evaluating"``...).
    """

    bundle: str | os.PathLike
    configs: Sequence[str | os.PathLike]
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    run_id: str = "run"

    @property
    def root(self) -> Path:
        """The bundle folder."""
        return Path(self.bundle)

    def config_paths(self) -> list[str]:
        """Absolute paths of the config files, in merge order."""
        paths = []
        for name in self.configs:
            path = Path(name)
            if not path.is_absolute():
                path = self.root / ("configs" if len(path.parts) == 1 else "") / path
            paths.append(str(path))
        return paths

    def values(self) -> dict[str, Any]:
        """Overrides with ``bundle_root`` filled in and paths as strings."""
        merged = {"bundle_root": str(self.root), **dict(self.overrides)}
        return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in merged.items()}

    def with_overrides(self, **overrides: Any) -> BundleRun:
        """A copy with more overrides (later ones win)."""
        return dataclasses.replace(self, overrides={**dict(self.overrides), **overrides})

    def command(self) -> list[str]:
        """The command line a user would type (``python -m monai.bundle run ...``)."""
        paths = self.config_paths()
        files = paths[0] if len(paths) == 1 else "[" + ",".join(f"'{p}'" for p in paths) + "]"
        cmd = [sys.executable, "-m", "monai.bundle", "run"]
        if self.run_id and self.run_id != "run":
            cmd.append(self.run_id)
        cmd += ["--config_file", files]
        for key, value in self.values().items():
            cmd += [f"--{key}", cli_value(value)]
        return cmd


def run_in_subprocess(
    run: BundleRun,
    log: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run a bundle command in a child process.

    Args:
        run: what to run.
        log: file receiving stdout and stderr (None: captured in the returned process).
        env: extra environment variables.
        cwd: working directory (default: the bundle folder).
        check: raise :class:`BundleRunError` on a non-zero exit.
        timeout: seconds.

    Returns:
        The completed process (``stdout`` holds the output when ``log`` is None).

    Raises:
        BundleRunError: the command failed (with ``check``); the message has the command and
            the last lines of its output.
    """
    cmd = run.command()
    full_env = {**os.environ, **(env or {})}
    workdir = str(cwd or run.root)
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w", encoding="utf-8") as handle:
            proc = subprocess.run(cmd, cwd=workdir, env=full_env, stdout=handle, stderr=subprocess.STDOUT,
                                  text=True, timeout=timeout, check=False)
        output = Path(log).read_text(encoding="utf-8", errors="replace")
    else:
        proc = subprocess.run(cmd, cwd=workdir, env=full_env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        output = (proc.stdout or "") + (proc.stderr or "")
    if check and proc.returncode != 0:
        where = f", log {log}" if log is not None else ""
        raise BundleRunError(
            f"bundle command failed (exit {proc.returncode}){where}:\n  {' '.join(cmd)}\n"
            f"--- output (tail) ---\n{output[-LOG_TAIL_CHARS:]}"
        )
    return proc


def run_in_process(run: BundleRun) -> Any:
    """Run a bundle workflow with ``monai.bundle.run`` in this process.

    The bundle's ``metadata.json`` and ``logging.conf`` are used when present, as the command
    line does.
    """
    from monai.bundle import run as monai_run  # heavy: imported when a bundle is run

    config_dir = run.root / "configs"
    extra: dict[str, Any] = {}
    if (config_dir / "metadata.json").is_file():
        extra["meta_file"] = str(config_dir / "metadata.json")
    if (config_dir / "logging.conf").is_file():
        extra["logging_file"] = str(config_dir / "logging.conf")
    return monai_run(run.run_id, config_file=run.config_paths(), **extra, **run.values())


def _stream_handlers() -> list[logging.StreamHandler]:
    """Every stream handler of the root logger and of every logger created so far."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    return [h for lg in loggers for h in lg.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


@contextlib.contextmanager
def _captured_output(buffer: io.StringIO) -> Iterator[None]:
    """Send ``sys.stdout``, ``sys.stderr`` and every console log handler to ``buffer`` for a while.

    A bundle's ``logging.conf`` replaces the root logger's handlers, and MONAI's module loggers
    bind their stream when they are created; both are put back afterwards, so that a run leaves
    the caller's logging (pytest's log capture included) as it found it.
    """
    originals = (sys.stdout, sys.stderr)
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    swapped = [(h, h.stream) for h in _stream_handlers() if h.stream in originals]
    for handler, _ in swapped:
        handler.setStream(buffer)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)
        for handler in _stream_handlers():  # created during the run, bound to the buffer
            if handler.stream is buffer:
                handler.setStream(originals[0])
        for handler in list(root.handlers):
            if handler not in root_handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in root_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(root_level)


def run_cli_in_process(args: Sequence[str], cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """``python -m monai.bundle ARGS`` run in this process by the command line's own ``fire`` entry point.

    The arguments are parsed exactly as on the command line (the same ``fire.Fire`` over the
    functions ``monai.bundle.__main__`` exposes), so a test or driver exercises the user's
    command without the ~6 s of starting Python and importing torch, MONAI and ignite again.

    Args:
        args: what follows ``python -m monai.bundle`` (``["run", "training", "--config_file", ...]``).
        cwd: working directory during the run (default: unchanged).

    Returns:
        A completed process: ``returncode`` 0, the ``SystemExit`` code, or 1 for an exception;
        ``stdout`` holds everything printed or logged, followed by the traceback of a failure;
        ``stderr`` is empty.
    """
    import fire  # heavy: MONAI's command line parser, imported when a command is run
    import monai.bundle.__main__ as cli

    commands = {name: getattr(cli, name) for name in dir(cli) if not name.startswith("_") and callable(getattr(cli, name))}
    buffer = io.StringIO()
    returncode = 0
    with contextlib.chdir(cwd or os.getcwd()), _captured_output(buffer):
        try:
            fire.Fire(commands, command=[str(a) for a in args], name="monai.bundle")
        except SystemExit as stop:
            returncode = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except Exception:  # the command line prints the traceback and exits with 1
            buffer.write(traceback.format_exc())
            returncode = 1
    gc.collect()  # the workflow's engines, networks and data loaders go now, not at the next run
    return subprocess.CompletedProcess([sys.executable, "-m", "monai.bundle", *map(str, args)], returncode,
                                       buffer.getvalue(), "")


def parse_bundle(run: BundleRun) -> Any:
    """The merged configs with the overrides, parsed (MONAI ``ConfigParser``); nothing is run.

    Raises:
        BundleRunError: a config file that does not exist.
    """
    from monai.bundle import ConfigParser  # heavy: imported when a bundle is parsed

    missing = [p for p in run.config_paths() if not os.path.isfile(p)]
    if missing:
        raise BundleRunError(f"bundle {run.root}: config file(s) not found: {', '.join(missing)}")
    parser = ConfigParser()
    parser.read_config(run.config_paths())
    parser.update(run.values())
    parser.parse()
    return parser
