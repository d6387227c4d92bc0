"""``medsegzoo.bundle_runs.run_cli_in_process``: a ``monai.bundle`` command line run in this process."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

from bundle_utils import BUNDLES_DIR, META_SCHEMA

from medsegzoo.bundle_runs import _captured_output, run_cli_in_process

META = BUNDLES_DIR / "tct_partial_label_segmentation" / "configs" / "metadata.json"


def test_a_passing_command_returns_zero_with_its_log_and_leaves_logging_as_it_was() -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, sys.stdout, sys.stderr)
    proc = run_cli_in_process(["verify_metadata", "--meta_file", META, "--filepath", META_SCHEMA])
    assert proc.returncode == 0
    assert "metadata is verified with no error" in proc.stdout
    assert proc.args[1:4] == ["-m", "monai.bundle", "verify_metadata"]
    assert (list(root.handlers), root.level, sys.stdout, sys.stderr) == before


def test_an_exception_is_exit_status_1_with_the_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_config.json"
    proc = run_cli_in_process(["run", "--config_file", missing], cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" in proc.stdout and str(missing) in proc.stdout


def test_an_unknown_command_is_the_parsers_exit_status() -> None:
    proc = run_cli_in_process(["no_such_command"])
    assert proc.returncode == 2  # fire's usage error, as on the command line
    assert "no_such_command" in proc.stdout


def test_handlers_created_during_a_run_write_to_the_console_afterwards() -> None:
    buffer = io.StringIO()
    logger = logging.getLogger("medsegzoo.tests.created_during_a_run")
    logger.propagate = False
    try:
        with _captured_output(buffer):
            handler = logging.StreamHandler(sys.stdout)  # bound to the buffer, as MONAI's get_logger does
            logger.addHandler(handler)
            logger.warning("inside")
        assert "inside" in buffer.getvalue()
        assert handler.stream is sys.stdout  # rebound: later output is not lost in a stale buffer
    finally:
        logger.handlers.clear()
