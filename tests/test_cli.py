from __future__ import annotations

import subprocess
import sys

from medsegzoo import __version__
from medsegzoo.cli import COMMANDS, main


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "medsegzoo", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"medsegzoo {__version__}"


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert name in text
