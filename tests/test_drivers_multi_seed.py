"""The multi-seed protocol's command line (medsegzoo.drivers.multi_seed); its scoring is tests/test_evaluation_scoring.py."""

from __future__ import annotations

from medsegzoo.drivers.multi_seed import main


def test_cli_rejects_bad_override(tmp_path, capsys) -> None:
    code = main(["--bundle", str(tmp_path), "--dataset_dir", str(tmp_path), "--datalist", str(tmp_path / "x.json"),
                 "--out", str(tmp_path / "o"), "--set", "no_equals_sign"])
    assert code == 1 and "KEY=VALUE" in capsys.readouterr().err
