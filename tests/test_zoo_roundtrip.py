"""Pack -> serve on 127.0.0.1 -> download (medsegzoo and MONAI) -> inference from the download.

A copy of the TCT bundle gets weights (a seeded TCT U-Net's state dict in models/model.pt, the
file its inference config loads), so the packed zip carries weights next to the configs. Both
downloads must be byte-identical to the zip's content; inference then runs from the downloaded
folder with nothing but the datalist pointing at phantoms. (Training is covered by the bundle's
own tests; it is skipped here to keep this test near a minute on a shared 2-core machine.)
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
from bundle_utils import MEDSEGZOO, bundle_dir, make_phantom_datalist, run_bundle, run_command

from medsegzoo.data.predictions import prediction_path
from medsegzoo.networks.tct_unet import TCTUNet
from medsegzoo.zoo.pack import pack_zoo
from medsegzoo.zoo.serve import serving

BUNDLE = "tct_partial_label_segmentation"


@pytest.mark.slow
def test_pack_serve_download_and_infer(tmp_path: Path) -> None:
    dataset_dir, datalist = make_phantom_datalist(tmp_path, "kits19", cases=4, size=40, seed=3)
    source = tmp_path / "bundles" / BUNDLE
    shutil.copytree(bundle_dir(BUNDLE), source, ignore=shutil.ignore_patterns("models", "eval", "logs", "__pycache__"))
    data = {"dataset_dir": dataset_dir, "datalist": datalist}
    torch.manual_seed(0)
    (source / "models").mkdir()
    torch.save(TCTUNet(in_channels=1, num_classes=5, aux_heads=False).state_dict(), source / "models" / "model.pt")
    (source / "eval").mkdir()  # run outputs must stay out of the zip
    (source / "eval" / "events.out").write_text("x")

    pack_zoo(tmp_path / "bundles", tmp_path / "zoo")
    version = json.loads((source / "configs" / "metadata.json").read_text())["version"]
    zip_name = f"{BUNDLE}_v{version}.zip"
    with zipfile.ZipFile(tmp_path / "zoo" / zip_name) as archive:
        members = set(archive.namelist())
    assert f"{BUNDLE}/models/model.pt" in members
    assert not [m for m in members if m.startswith(f"{BUNDLE}/eval/")]

    with serving(tmp_path / "zoo") as url:
        run_command([*MEDSEGZOO, "zoo", "download", BUNDLE, "--index", url + "model_info.json",
                     "--bundle-dir", tmp_path / "ours"])
        run_command([sys.executable, "-m", "monai.bundle", "download", "--name", BUNDLE, "--url", url + zip_name,
                     "--bundle_dir", tmp_path / "monai"])

    test_cases = json.loads(datalist.read_text())["test"]
    assert test_cases
    expected = sorted(m[len(BUNDLE) + 1:] for m in members if not m.endswith("/"))
    trees = []
    for where in ("ours", "monai"):
        downloaded = tmp_path / where / BUNDLE
        files = sorted(p.relative_to(downloaded).as_posix() for p in downloaded.rglob("*") if p.is_file())
        assert files == expected, where
        trees.append({f: (downloaded / f).read_bytes() for f in files})
    assert trees[0] == trees[1]
    assert trees[0]["models/model.pt"] == (source / "models" / "model.pt").read_bytes()

    downloaded = tmp_path / "monai" / BUNDLE
    run_bundle(downloaded, ["inference.json", "smoke.json"], {**data, "bundle_root": downloaded},
               run_id="inference", cwd=tmp_path)
    for case in test_cases:
        image = dataset_dir / case["image"]
        pred = nib.load(str(prediction_path(downloaded / "eval", case["case_id"])))
        assert pred.shape[:3] == nib.load(str(image)).shape[:3]
        assert set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1, 2, 3, 4, 5}
