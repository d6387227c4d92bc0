from __future__ import annotations

import json

import pytest

from medsegzoo.utils import atomic_path, atomic_write_json


def test_atomic_write_json_roundtrip(tmp_path):
    out = atomic_write_json(tmp_path / "sub" / "list.json", {"training": [{"image": "a.nii.gz"}]})
    assert json.loads(out.read_text()) == {"training": [{"image": "a.nii.gz"}]}
    assert out.read_text().startswith('{\n    "training"')  # 4-space indent
    assert [p.name for p in out.parent.iterdir()] == ["list.json"]  # no temp left


def test_atomic_path_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_atomic_path_keeps_compound_suffix(tmp_path):
    with atomic_path(tmp_path / "img.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"x")
    assert (tmp_path / "img.nii.gz").read_bytes() == b"x"


def test_atomic_file_gets_default_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        out = atomic_write_json(tmp_path / "a.json", {})
    finally:
        os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not mkstemp's 0600
