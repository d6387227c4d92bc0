"""Bad inputs and faults a new user meets, run as a user runs them; docs/reliability.md is their table.

Every row of docs/reliability.md is a :class:`Scenario` here: the folder it is run in is
prepared, its command runs in a subprocess (``medsegzoo`` = this interpreter's ``-m medsegzoo``),
and the exit code and every quoted message of the "what happens" column must be what the
command prints; ``check`` asserts the rest of that column (files left, files untouched).
:func:`test_reliability_md_is_the_table_of_the_scenarios` fails when the page and this list
differ; rewrite the page with ``python tests/test_reliability.py``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
ENV = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
EVALUATE = "medsegzoo evaluate --pred pred --gt gt --labels aeval8 --workers 1 --quiet"


@dataclass(frozen=True)
class Scenario:
    """One row of docs/reliability.md.

    Attributes:
        key: test id.
        given: the bad input or fault (Markdown).
        command: what the user runs, in the prepared folder.
        code: the exit code (-9: killed by SIGKILL).
        prints: fragments the command prints (stdout or stderr), in order of the row.
        then: the rest of what happens (Markdown), asserted by ``check``.
        setup: prepares the folder.
        check: asserts ``then`` given the folder and the finished process.
        run: runs the command (default: once, to completion); faults bring their own.
    """

    key: str
    given: str
    command: str
    code: int
    prints: tuple[str, ...]
    then: str
    setup: Callable[[Path], None]
    check: Callable[[Path, subprocess.CompletedProcess], None]
    run: Callable[[Path, str], subprocess.CompletedProcess] | None = None


# ---- running commands ------------------------------------------------------------------------


def _argv(command: str) -> list[str]:
    """The command as a process: ``medsegzoo`` is this interpreter; shell syntax goes to bash."""
    medsegzoo = f"{shlex.quote(sys.executable)} -m medsegzoo"
    if any(token in command for token in ("&&", "ulimit", "|")):
        return ["bash", "-c", command.replace("medsegzoo ", medsegzoo + " ")]
    words = shlex.split(command)
    return [sys.executable, "-m", "medsegzoo", *words[1:]] if words[0] == "medsegzoo" else words


def _run(folder: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(_argv(command), cwd=folder, env=ENV, capture_output=True, text=True, timeout=120, check=False)


def _start(folder: Path, command: str) -> subprocess.Popen:
    return subprocess.Popen(_argv(command), cwd=folder, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(folder: Path, command: str, ready: Callable[[], bool], attempts: int = 4,
               restore: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` and SIGKILL it as soon as ``ready()`` holds while it still runs.

    A run that finishes before ``ready()`` is seen says nothing about a kill: the folder is
    restored and the run repeated (a few times; then the test fails).
    """
    for _ in range(attempts):
        proc = _start(folder, command)
        while proc.poll() is None and not ready():
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate(timeout=60)
            return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        proc.communicate(timeout=60)
        if restore is not None:
            restore()
    raise AssertionError(f"{command!r} always finished before the moment to kill it")


# ---- folders ---------------------------------------------------------------------------------


def _label_maps(folder: Path) -> None:
    """gt/ and pred/ with two cases of aeval8 (and btcv-valid) label maps, 10 x 12 x 8 voxels."""
    from medsegzoo.data.io import save_volume

    gt = np.zeros((10, 12, 8), np.uint8)
    gt[2:6, 2:6, 2:6] = 1
    gt[7:9, 8:11, 1:3] = 2
    pred = np.zeros_like(gt)
    pred[3:7, 2:6, 2:6] = 1
    pred[0:2, 0:2, 6:8] = 8
    for case in ("a", "b"):
        save_volume(folder / "gt" / f"{case}.nii.gz", gt, np.diag([1.5, 1.0, 2.0, 1.0]))
        save_volume(folder / "pred" / f"{case}.nii.gz", pred, np.diag([1.5, 1.0, 2.0, 1.0]))


def _with_report(folder: Path) -> None:
    """Label maps and a complete report from an earlier run in report/."""
    _label_maps(folder)
    done = _run(folder, f"{EVALUATE} --out report --title earlier")
    assert done.returncode == 0, done.stderr


def _btcv(folder: Path) -> Path:
    """A BTCV-layout phantom set (2 labeled cases) in btcv/; returns the first case's image."""
    from medsegzoo.cli import main

    assert main(["phantoms", str(folder / "btcv"), "--layout", "btcv", "--cases", "2", "--size", "16", "--quiet"]) == 0
    return folder / "btcv" / "RawData" / "Training" / "img" / "img0001.nii.gz"


def _damaged_btcv(damage: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        import nibabel as nib

        image = _btcv(folder)
        if damage == "label":
            (folder / "btcv" / "RawData" / "Training" / "label" / "label0001.nii.gz").unlink()
        elif damage == "truncated":
            data = image.read_bytes()
            image.write_bytes(data[: len(data) // 2])
        else:
            loaded = nib.load(str(image))
            array = np.asarray(loaded.dataobj, dtype=np.float32)
            if damage == "4d":
                array = np.stack([array, array], -1)
            else:
                array.flat[0] = np.nan
            nib.save(nib.Nifti1Image(array, loaded.affine), str(image))

    return setup


def _zoo(folder: Path) -> None:
    """bundles/demo 0.1.0 (a minimal bundle) packed into zoo/."""
    from zoo_utils import make_fake_bundle

    from medsegzoo.zoo.pack import pack_zoo

    make_fake_bundle(folder / "bundles", "demo", "0.1.0")
    pack_zoo(folder / "bundles", folder / "zoo")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---- checks ----------------------------------------------------------------------------------


def _nothing(folder: Path, done: subprocess.CompletedProcess) -> None:
    assert _hidden(folder) == [], "no staging or temporary file is left"


def _no_traceback(done: subprocess.CompletedProcess) -> None:
    # one error line (a list of problems follows it, one per line), never a traceback
    assert done.stderr.startswith("medsegzoo ") and "Traceback" not in done.stderr, done.stderr


def _check_taken(folder: Path, done: subprocess.CompletedProcess) -> None:
    _no_traceback(done)
    assert (folder / "taken").read_text() == "my notes"
    assert "cases" not in done.stdout  # nothing was scored


def _check_foreign(folder: Path, done: subprocess.CompletedProcess) -> None:
    _no_traceback(done)
    assert _files(folder / "thesis") == {"chapter1.tex": b"my notes"}


def _old_report_whole(folder: Path, done: subprocess.CompletedProcess) -> None:
    _no_traceback(done)
    summary = (folder / "report" / "summary.md").read_text()
    assert summary.startswith("# earlier\n") and (folder / "report" / "evaluation.json").is_file()
    assert _hidden(folder) == []


def _check_full_disk(folder: Path, done: subprocess.CompletedProcess) -> None:
    _old_report_whole(folder, done)
    assert done.stderr.startswith("medsegzoo evaluate: error: report/"), done.stderr  # the file as the user knows it


def _no_datalist(folder: Path, done: subprocess.CompletedProcess) -> None:
    _no_traceback(done)
    assert not (folder / "list.json").exists() and _hidden(folder) == []


def _datalist_written(unlabeled: tuple[str, ...] = ()) -> Callable[[Path, subprocess.CompletedProcess], None]:
    def check(folder: Path, done: subprocess.CompletedProcess) -> None:
        datalist = json.loads((folder / "list.json").read_text())
        assert datalist.get("missing_labels", []) == list(unlabeled)
        labeled = {e["case_id"] for k in ("training", "validation", "test") for e in datalist[k]}
        assert labeled == {"btcv_0001", "btcv_0002"} - set(unlabeled)

    return check


def _check_btcv_tolerance(folder: Path, done: subprocess.CompletedProcess) -> None:
    settings = json.loads((folder / "report" / "evaluation.json").read_text())
    assert settings["nsd_tolerance_default_mm"] == 2.0
    assert settings["nsd_tolerance_defaulted_classes"] == ["portal_vein_and_splenic_vein"]
    assert "scored at the convention's general tolerance of 2 mm" in (folder / "report" / "summary.md").read_text()


def _check_no_report(folder: Path, done: subprocess.CompletedProcess) -> None:
    _no_traceback(done)
    assert not (folder / "report").exists() and _hidden(folder) == []


def _check_tampered(folder: Path, done: subprocess.CompletedProcess) -> None:
    _no_traceback(done)
    assert not (folder / "models").exists() or list((folder / "models").iterdir()) == []


def _check_resumed(folder: Path, done: subprocess.CompletedProcess) -> None:
    assert (folder / "models" / "demo" / "models" / "model.pt").read_bytes() == b"weights"
    assert sorted(p.name for p in (folder / "models").iterdir()) == ["demo"]


# ---- faults ----------------------------------------------------------------------------------


def _snapshot(folder: Path) -> Callable[[], None]:
    """A function that puts ``folder``'s files back as they are now (for a run to repeat)."""
    files = _files(folder)

    def restore() -> None:
        shutil.rmtree(folder)
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)

    return restore


def _kill_evaluate(folder: Path, command: str) -> subprocess.CompletedProcess:
    def writing() -> bool:  # the new report is being written beside the old one
        return any((stage / "per_case.csv").exists() for stage in folder.glob(".report.*.staging"))

    return _kill_when(folder, command, writing, restore=_snapshot(folder / "report"))


def _check_killed_evaluate(folder: Path, done: subprocess.CompletedProcess) -> None:
    assert (folder / "report" / "summary.md").read_text().startswith("# earlier\n")
    assert sorted(p.name for p in (folder / "report").iterdir()) == [
        "box_assd.png", "box_dsc.png", "box_hd95.png", "box_nsd.png",
        "evaluation.json", "per_case.csv", "per_class.csv", "summary.json", "summary.md",
    ]
    stages = _hidden(folder)
    assert len(stages) == 1 and stages[0].endswith(".staging")  # the killed run's, hidden
    again = _run(folder, f"{EVALUATE} --no-plots --out report --title again")
    assert again.returncode == 0 and _hidden(folder) == []  # the next run removes it
    assert (folder / "report" / "summary.md").read_text().startswith("# again\n")


def _big_bundle(folder: Path) -> None:
    """zoo/ holds demo 0.1.0; bundles/demo is 0.2.0 with 16 MiB of incompressible weights."""
    _zoo(folder)
    bundle = folder / "bundles" / "demo"
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    meta["version"] = "0.2.0"
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    (bundle / "models" / "model.pt").write_bytes(np.random.default_rng(0).bytes(16 << 20))


def _kill_pack(folder: Path, command: str) -> subprocess.CompletedProcess:
    def writing() -> bool:  # the new zip's hidden temporary exists
        return any(folder.glob("zoo/.demo_v0.2.0.zip.*"))

    return _kill_when(folder, command, writing, restore=_snapshot(folder / "zoo"))


def _check_killed_pack(folder: Path, done: subprocess.CompletedProcess) -> None:
    zoo = folder / "zoo"
    assert not (zoo / "demo_v0.2.0.zip").exists() and not (zoo / "demo_v0.2.0.zip.sha256").exists()
    assert list(json.loads((zoo / "model_info.json").read_text())) == ["demo_v0.1.0"]
    assert len(_hidden(zoo)) == 1  # the killed pack's temporary, under a hidden name
    again = _run(folder, "medsegzoo zoo pack --bundles-dir bundles --out zoo")
    assert again.returncode == 0, again.stderr
    assert _hidden(zoo) == [] and list(json.loads((zoo / "model_info.json").read_text())) == ["demo_v0.1.0", "demo_v0.2.0"]


def _two_at_once(folder: Path, command: str) -> subprocess.CompletedProcess:
    runs = [_start(folder, command.replace("OUT", out)) for out in ("r1", "r2")]
    results = [(proc, *proc.communicate(timeout=120)) for proc in runs]
    code = max(proc.returncode for proc, _, _ in results)
    return subprocess.CompletedProcess(command, code, "".join(o for _, o, _ in results), "".join(e for _, _, e in results))


def _check_two_at_once(folder: Path, done: subprocess.CompletedProcess) -> None:
    alone = _run(folder, f"{EVALUATE} --no-plots --out alone")
    assert alone.returncode == 0
    for out in ("r1", "r2"):
        assert (folder / out / "per_case.csv").read_bytes() == (folder / "alone" / "per_case.csv").read_bytes()
        assert json.loads((folder / out / "evaluation.json").read_text())["n_cases"] == 2
    assert _hidden(folder) == []


def _no_setup(folder: Path) -> None:
    pass


# ---- the table -------------------------------------------------------------------------------

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "evaluate_out_is_a_file",
        "`--out` names an existing file (and a prediction would fail scoring)",
        f"{EVALUATE} --out taken",
        1,
        ("medsegzoo evaluate: error: taken: exists and is a file; the output is a folder, choose another path",),
        "before any case is scored; the file is untouched",
        lambda f: (_label_maps(f), (f / "taken").write_text("my notes"), (f / "pred" / "a.nii.gz").write_bytes(b"x")),
        _check_taken,
    ),
    Scenario(
        "evaluate_out_holds_other_files",
        "`--out` names a folder holding files that are not a report",
        f"{EVALUATE} --out thesis",
        1,
        ("thesis: folder exists and holds files that are not an earlier output of this command",),
        "before scoring; nothing in the folder is touched (a folder holding a report is replaced whole)",
        lambda f: (_label_maps(f), (f / "thesis").mkdir(), (f / "thesis" / "chapter1.tex").write_text("my notes")),
        _check_foreign,
    ),
    Scenario(
        "evaluate_disk_full",
        "the disk fills while the report is written (simulated with `ulimit -f`: 8 KiB per file), an earlier "
        "report in `report/`",
        f"ulimit -f 8 && {EVALUATE} --out report",
        1,
        ("File too large",),
        "one line naming the file (`report/...`), no traceback; the earlier report stays whole; no staging folder left",
        _with_report,
        _check_full_disk,
    ),
    Scenario(
        "evaluate_missing_input_folder",
        "`--pred` names a folder that does not exist",
        "medsegzoo evaluate --pred nowhere --gt gt --labels aeval8 --out report --workers 1 --quiet",
        1,
        ("medsegzoo evaluate: error: nowhere: not a folder",),
        "no report folder is created",
        _label_maps,
        _check_no_report,
    ),
    Scenario(
        "evaluate_btcv_default_tolerance",
        "BTCV classes with the default NSD tolerance (`portal_vein_and_splenic_vein` has no FLARE22 value)",
        "medsegzoo evaluate --pred pred --gt gt --labels btcv --workers 1 --quiet --no-plots --out report",
        0,
        ("2 cases, 13 classes",),
        "that class is scored at the A-Eval convention's general 2 mm, named in `evaluation.json` "
        "(`nsd_tolerance_default_mm`, `nsd_tolerance_defaulted_classes`) and `summary.md`",
        _label_maps,
        _check_btcv_tolerance,
    ),
    Scenario(
        "evaluate_btcv_explicit_table",
        "the same with `--tolerance aeval` given explicitly",
        "medsegzoo evaluate --pred pred --gt gt --labels btcv --workers 1 --quiet --out report --tolerance aeval",
        1,
        ("NSD tolerance table 'aeval' has no tolerance for class(es) ['portal_vein_and_splenic_vein']",),
        "before any file is read; no report folder",
        _label_maps,
        _check_no_report,
    ),
    Scenario(
        "datalist_out_below_a_file",
        "`datalist --out afile/sub.json` where `afile` is a file",
        "medsegzoo datalist btcv btcv --out afile/sub.json",
        1,
        ("medsegzoo datalist: error: afile/sub.json: cannot create the file: afile is a file, not a folder",),
        "before the data set is scanned",
        lambda f: (_btcv(f), (f / "afile").write_text("x")),
        _no_datalist,
    ),
    Scenario(
        "datalist_deleted_label",
        "a fully labeled layout (BTCV `RawData/Training`) with one label file deleted",
        "medsegzoo datalist btcv btcv --out list.json",
        1,
        ("pass --allow-unlabeled", "case btcv_0001 has no label (expected"),
        "the case is named with the label file expected; no datalist written",
        _damaged_btcv("label"),
        _no_datalist,
    ),
    Scenario(
        "datalist_deleted_label_allowed",
        "the same with `--allow-unlabeled`",
        "medsegzoo datalist btcv btcv --out list.json --allow-unlabeled",
        0,
        ("warning: 1 image(s) of a labeled part of the layout have no label", "(--allow-unlabeled): btcv_0001"),
        "the datalist lists the case under `unlabeled` and in `missing_labels`",
        _damaged_btcv("label"),
        _datalist_written(("btcv_0001",)),
    ),
    Scenario(
        "datalist_truncated_image",
        "a truncated image (half its bytes), default checks",
        "medsegzoo datalist btcv btcv --out list.json",
        1,
        ("img0001.nii.gz: file is truncated or corrupt",),
        "no datalist written (headers are read by default)",
        _damaged_btcv("truncated"),
        _no_datalist,
    ),
    Scenario(
        "datalist_truncated_image_no_check",
        "the same with `--no-check`",
        "medsegzoo datalist btcv btcv --out list.json --no-check",
        0,
        ("wrote list.json",),
        "the header checks are skipped (the files exist), the datalist is written",
        _damaged_btcv("truncated"),
        _datalist_written(),
    ),
    Scenario(
        "datalist_4d_image",
        "a 4D image (two channels), default checks",
        "medsegzoo datalist btcv btcv --out list.json",
        1,
        ("img0001.nii.gz: image is 4D (shape (16, 16, 16, 2)); a 3D volume is required",),
        "no datalist written",
        _damaged_btcv("4d"),
        _no_datalist,
    ),
    Scenario(
        "datalist_nan_image",
        "an image with a NaN voxel, default checks",
        "medsegzoo datalist btcv btcv --out list.json",
        0,
        ("wrote list.json",),
        "written: NaN is a voxel check, the default reads headers only",
        _damaged_btcv("nan"),
        _datalist_written(),
    ),
    Scenario(
        "datalist_nan_image_validate",
        "the same with `--validate`",
        "medsegzoo datalist btcv btcv --out list.json --validate",
        1,
        ("img0001.nii.gz: image has 1 NaN and 0 infinite voxels",),
        "no datalist written",
        _damaged_btcv("nan"),
        _no_datalist,
    ),
    Scenario(
        "zoo_download_tampered",
        "a zoo zip changed after packing (its last 30 bytes zeroed)",
        "medsegzoo zoo download demo --index zoo/model_info.json --bundle-dir models",
        1,
        ("sha256 checksum mismatch", "nothing was extracted"),
        "nothing is left in `models/`",
        lambda f: (_zoo(f), (f / "zoo" / "demo_v0.1.0.zip").write_bytes(
            (f / "zoo" / "demo_v0.1.0.zip").read_bytes()[:-30] + bytes(30))),
        _check_tampered,
    ),
    Scenario(
        "zoo_download_resumes",
        "a `.part` left by an interrupted download (the zip's first 200 bytes) in `models/`",
        "medsegzoo zoo download demo --index zoo/model_info.json --bundle-dir models",
        0,
        ("models/demo",),
        "the download resumes from the part, is verified (sha256) and extracted; the part is removed",
        lambda f: (_zoo(f), (f / "models").mkdir(), (f / "models" / ".demo_v0.1.0.zip.part").write_bytes(
            (f / "zoo" / "demo_v0.1.0.zip").read_bytes()[:200])),
        _check_resumed,
    ),
    Scenario(
        "evaluate_killed",
        "SIGKILL while `evaluate` writes its report over an earlier one",
        f"{EVALUATE} --out report --title new",
        -9,
        (),
        "`report/` is the earlier report, whole (the new one was staged in a hidden folder beside it, "
        "which the next run removes)",
        _with_report,
        _check_killed_evaluate,
        _kill_evaluate,
    ),
    Scenario(
        "zoo_pack_killed",
        "SIGKILL while `zoo pack` writes a 16 MiB bundle zip",
        "medsegzoo zoo pack --bundles-dir bundles --out zoo",
        -9,
        (),
        "no zip or `.sha256` under the new name, `model_info.json` unchanged; the next pack removes the "
        "hidden temporary and publishes the zip",
        _big_bundle,
        _check_killed_pack,
        _kill_pack,
    ),
    Scenario(
        "evaluate_two_at_once",
        "two `evaluate` runs at once into two folders of the same parent (`OUT` = `r1`, `r2`)",
        f"{EVALUATE} --no-plots --out OUT",
        0,
        (),
        "both reports complete and equal to a run alone; no staging folder left",
        _label_maps,
        _check_two_at_once,
        _two_at_once,
    ),
)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.key for s in SCENARIOS])
def test_scenario(scenario: Scenario, tmp_path: Path) -> None:
    scenario.setup(tmp_path)
    done = (scenario.run or _run)(tmp_path, scenario.command)
    printed = done.stdout + done.stderr
    assert done.returncode == scenario.code, printed
    position = 0
    for fragment in scenario.prints:
        found = printed.find(fragment, position)
        assert found >= 0, f"{fragment!r} not printed (in this order) by {scenario.command!r}:\n{printed}"
        position = found + len(fragment)
    scenario.check(tmp_path, done)


# ---- the page --------------------------------------------------------------------------------

HEADER = """# Reliability: bad inputs and faults

Each row was run as written, in a folder prepared as the first column says, by
`tests/test_reliability.py` (which also checks that this page is its table: edit the
scenarios there and rewrite the page with `python tests/test_reliability.py`). `medsegzoo`
turns every bad input into one line `medsegzoo COMMAND: error: <path>: <problem>` and exit
code 1, never a traceback; an `OSError` (permission, full disk, a file where a folder should
be, a missing folder) is printed the same way with its path. Reports (`evaluate`, `compare`)
are written into a hidden staging folder beside `--out` and renamed into place when
complete; zoo zips and datalists are written to hidden temporaries and renamed.

| given | command | what happens |
|---|---|---|
"""

FOOTER = """
Not in the table, tested elsewhere: no permission to write `--out` (`tests/test_utils_atomic.py`,
skipped when the tests run as root, who may write anywhere); a download whose connection drops
mid-way keeps its `.part` and resumes from it over HTTP `Range` (`tests/test_zoo_download.py`);
`medsegzoo.data.validation.check_training_datalist`, the check the bundles run before training,
reports every bad file of a datalist in one message (`tests/test_data_validation.py`).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """docs/reliability.md as the scenarios say."""
    rows = []
    for s in SCENARIOS:
        code = "killed (SIGKILL)" if s.code == -9 else f"exit {s.code}"
        printed = "; prints " + ", ".join(f"`{_cell(p)}`" for p in s.prints) if s.prints else ""
        rows.append(f"| {_cell(s.given)} | `{_cell(s.command)}` | {code}{printed}; {_cell(s.then)} |\n")
    return HEADER + "".join(rows) + FOOTER


def test_reliability_md_is_the_table_of_the_scenarios() -> None:
    assert DOC.is_file(), f"{DOC} is missing: run python tests/test_reliability.py"
    assert DOC.read_text(encoding="utf-8") == render(), "docs/reliability.md is out of date: run python tests/test_reliability.py"


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC}")
