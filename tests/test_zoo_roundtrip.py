"""Pack -> serve on 127.0.0.1 -> download (medsegzoo and MONAI) -> inference from the download.

A copy of a bundle gets weights (a seeded network's state dict in ``models/model.pt``, the file
its inference config loads) and whatever else its inference reads, and is published as a
smoke-scale model: the values of ``smoke.json`` written into its ``inference.json``
(:func:`zoo_utils.bake_overrides`), so that ``run --config_file configs/inference.json`` alone
runs it, as the model zoo does. After the download, inference runs from the downloaded folder
with nothing but the datalist pointing at phantoms and must write the same predictions as the
same inference in the source copy.

* TCT: the weights travel inside the zip; both downloads are byte-identical to its content.
* STU-Net-S: the weights (58 MB) are above the zoo's 25 MB limit, so they are served beside
  the zip and named in its ``large_files.yml``; MONAI's download plus ``download_large_files``
  and ``medsegzoo zoo download`` fetch them; the plan ``models/fingerprint.json`` inference
  reads travels in the zip.

(Training is covered by the bundles' own tests; seeded weights keep this near a minute each.)
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_utils import MEDSEGZOO, bundle_dir, bundle_parser, make_phantom_datalist, monai_bundle, run_bundle, run_command
from zoo_utils import bake_overrides

from medsegzoo.data.predictions import prediction_path
from medsegzoo.zoo.download import download_bundle
from medsegzoo.zoo.pack import ZOO_FILE_LIMIT_BYTES, file_digest, pack_zoo
from medsegzoo.zoo.serve import serving

pytestmark = pytest.mark.slow


def _source_copy(name: str, tmp_path: Path) -> Path:
    """``bundles/<name>`` copied without run outputs, published at smoke scale."""
    source = tmp_path / "bundles" / name
    shutil.copytree(bundle_dir(name), source, ignore=shutil.ignore_patterns("models", "eval", "logs", "__pycache__"))
    assert bake_overrides(source)  # smoke.json's network and patch now in inference.json
    (source / "models").mkdir()
    return source


def _seeded_weights(source: Path) -> Path:
    """A seeded state dict of the inference network (inference.json alone) in models/model.pt."""
    torch.manual_seed(0)
    net = bundle_parser(source, "inference.json").get_parsed_content("network_def")
    weights = source / "models" / "model.pt"
    torch.save(net.state_dict(), weights)
    return weights


def _infer(bundle: Path, data: dict[str, Path], cwd: Path) -> None:
    """``python -m monai.bundle run --config_file configs/inference.json`` in ``bundle`` (in this process)."""
    run_bundle(bundle, "inference.json", {**data, "bundle_root": bundle}, cwd=cwd)


def _predictions(bundle: Path, cases: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    found = {}
    for case in cases:
        image = nib.load(str(prediction_path(bundle / "eval", case["case_id"])))
        found[case["case_id"]] = (np.asarray(image.dataobj), image.affine)
    return found


def _assert_same_predictions(source: Path, downloaded: Path, cases: list[dict], classes: int) -> None:
    expected, got = _predictions(source, cases), _predictions(downloaded, cases)
    labels = set()
    for case_id, (array, affine) in expected.items():
        assert np.array_equal(got[case_id][0], array), f"{case_id}: the downloaded bundle predicts otherwise"
        assert np.allclose(got[case_id][1], affine)
        labels |= set(np.unique(array).tolist())
    assert labels <= set(range(classes + 1))
    assert len(labels) > 1, "a constant prediction would not show which weights were used"


def test_pack_serve_download_and_infer(tmp_path: Path) -> None:
    name = "tct_partial_label_segmentation"
    dataset_dir, datalist = make_phantom_datalist(tmp_path, "kits19", cases=4, size=40, seed=3)
    source = _source_copy(name, tmp_path)
    data = {"dataset_dir": dataset_dir, "datalist": datalist}
    weights = _seeded_weights(source)
    assert weights.stat().st_size < ZOO_FILE_LIMIT_BYTES
    (source / "models" / "checkpoint_final.pt").write_bytes(b"resumable training state")  # never published
    (source / "eval").mkdir()  # run outputs must stay out of the zip
    (source / "eval" / "events.out").write_text("x")

    pack_zoo(tmp_path / "bundles", tmp_path / "zoo")
    version = json.loads((source / "configs" / "metadata.json").read_text())["version"]
    zip_name = f"{name}_v{version}.zip"
    with zipfile.ZipFile(tmp_path / "zoo" / zip_name) as archive:
        members = set(archive.namelist())
    assert f"{name}/models/model.pt" in members and f"{name}/large_files.yml" not in members
    assert not [m for m in members if m.startswith(f"{name}/eval/") or m.endswith("checkpoint_final.pt")]

    with serving(tmp_path / "zoo") as url:
        run_command([*MEDSEGZOO, "zoo", "download", name, "--index", url + "model_info.json",
                     "--bundle-dir", tmp_path / "ours"])
        run_command([sys.executable, "-m", "monai.bundle", "download", "--name", name, "--url", url + zip_name,
                     "--bundle_dir", tmp_path / "monai"])

    expected = sorted(m[len(name) + 1:] for m in members if not m.endswith("/"))
    trees = []
    for where in ("ours", "monai"):
        downloaded = tmp_path / where / name
        files = sorted(p.relative_to(downloaded).as_posix() for p in downloaded.rglob("*") if p.is_file())
        assert files == expected, where
        trees.append({f: (downloaded / f).read_bytes() for f in files})
    assert trees[0] == trees[1]
    assert trees[0]["models/model.pt"] == weights.read_bytes()

    test_cases = json.loads(datalist.read_text())["test"]
    assert test_cases
    _infer(source, data, tmp_path)
    _infer(tmp_path / "monai" / name, data, tmp_path)
    _assert_same_predictions(source, tmp_path / "monai" / name, test_cases, classes=5)


def test_large_weights_and_plan_download_and_infer(tmp_path: Path) -> None:
    name = "stunet_cross_dataset_evaluation"
    dataset_dir, datalist = make_phantom_datalist(tmp_path, "flare22", cases=2, size=48, seed=0, split="0.5/0.0/0.5",
                                                  phantom_args=["--no-tumors"])
    source = _source_copy(name, tmp_path)
    data = {"dataset_dir": dataset_dir, "datalist": datalist}
    # the plan (spacing, patch, intensity statistics) that training writes and inference reads
    run_bundle(source, ["train.json", "smoke.json", "preprocess.json"], {**data, "bundle_root": source},
               run_id="preprocessing", cwd=tmp_path)
    plan = source / "models" / "fingerprint.json"
    assert plan.is_file()
    weights = _seeded_weights(source)
    assert weights.stat().st_size > ZOO_FILE_LIMIT_BYTES  # STU-Net-S: served beside the zip

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    with serving(zoo) as url:
        pack_zoo(tmp_path / "bundles", zoo, base_url=url)
        version = json.loads((source / "configs" / "metadata.json").read_text())["version"]
        key = f"{name}_v{version}"
        with zipfile.ZipFile(zoo / f"{key}.zip") as archive:
            members = set(archive.namelist())
            listed = archive.read(f"{name}/large_files.yml").decode()
        assert f"{name}/models/fingerprint.json" in members and f"{name}/models/model.pt" not in members
        assert f"{url}{key}_files/models/model.pt" in listed and file_digest(weights, "sha256") in listed

        # the model zoo's way, with MONAI's command line (parsed and run in this process; the TCT
        # test runs it as a real process); and medsegzoo's verified download
        monai_bundle("download", "--name", name, "--url", url + f"{key}.zip", "--bundle_dir", tmp_path / "monai")
        downloaded = tmp_path / "monai" / name
        monai_bundle("download_large_files", "--bundle_path", downloaded)
        download_bundle(name, url + "model_info.json", tmp_path / "ours")  # its CLI: the TCT test
    for where in (downloaded, tmp_path / "ours" / name):
        assert (where / "models" / "model.pt").read_bytes() == weights.read_bytes(), where
        assert (where / "models" / "fingerprint.json").read_bytes() == plan.read_bytes(), where

    test_cases = json.loads(datalist.read_text())["test"]
    assert test_cases
    _infer(source, data, tmp_path)
    _infer(downloaded, data, tmp_path)
    _assert_same_predictions(source, downloaded, test_cases, classes=8)
