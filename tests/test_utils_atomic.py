from __future__ import annotations

import json
from pathlib import Path

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


def test_atomic_path_names_the_file_when_a_write_error_names_none(tmp_path):
    # a library's write() on a full disk raises OSError(ENOSPC) without a file name
    import errno

    with pytest.raises(OSError) as info, atomic_path(tmp_path / "per_case.csv"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "per_case.csv")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_the_old_folder_only_when_complete(tmp_path):
    from medsegzoo.utils.atomic import atomic_dir

    out = tmp_path / "report"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out) as staging:
        (staging / "new.txt").write_text("half")
        assert not (out / "new.txt").exists()  # nothing reaches the target while writing
        raise RuntimeError("crash while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # staging removed
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    with atomic_dir(out) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    assert [p.name for p in out.iterdir()] == ["new.txt"]


def test_atomic_dir_removes_stages_of_dead_processes_only(tmp_path):
    import os
    import subprocess
    import sys

    from medsegzoo.utils.atomic import atomic_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".report.{dead_pid}.abc123.staging"
    live = tmp_path / f".report.{os.getppid()}.abc123.staging"  # the test runner's parent: alive
    other = tmp_path / f".report2.{dead_pid}.abc123.staging"  # another target's stage
    for folder in (stale, live, other):
        folder.mkdir()
    with atomic_dir(tmp_path / "report") as staging:
        (staging / "a.txt").write_text("a")
    assert not stale.exists() and live.is_dir() and other.is_dir()
    assert (tmp_path / "report" / "a.txt").read_text() == "a"


@pytest.mark.parametrize("case", ["file_at_target", "file_in_parents", "foreign_folder", "read_only_parent", "current_folder"])
def test_check_output_path_refuses_before_any_work(tmp_path, monkeypatch, case):
    import os

    from medsegzoo.errors import OutputError
    from medsegzoo.utils.atomic import atomic_dir

    target = tmp_path / "out"
    expected = {
        "file_at_target": "exists and is a file",
        "file_in_parents": f"{tmp_path / 'afile'} is a file, not a folder",
        "foreign_folder": "holds files that are not an earlier output",
        "read_only_parent": f"no permission to write in {tmp_path / 'ro'}",
        "current_folder": "not the current folder or its parent",
    }[case]
    if case == "file_at_target":
        target.write_text("x")
    elif case == "file_in_parents":
        (tmp_path / "afile").write_text("x")
        target = tmp_path / "afile" / "sub" / "out"
    elif case == "current_folder":
        monkeypatch.chdir(tmp_path)
        target = Path(".")
    elif case == "foreign_folder":
        target.mkdir()
        (target / "thesis.tex").write_text("x")
    else:
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o555)
        target = tmp_path / "ro" / "out"
        if os.access(tmp_path / "ro", os.W_OK):  # root ignores permissions
            pytest.skip("running as root")
    ran = []
    with pytest.raises(OutputError, match=expected) as info, atomic_dir(target, may_replace=lambda p: (p / "summary.json").is_file()):
        ran.append(True)
    assert not ran and str(target) in str(info.value)
