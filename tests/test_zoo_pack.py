"""medsegzoo.zoo.pack: reproducible zips, index in the model-zoo format, sha256 files, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from zoo_utils import make_fake_bundle

from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.zoo.pack import bundle_files, pack_bundle, pack_zoo

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_pack_bundle_layout_and_checksums(tmp_path: Path) -> None:
    bundle = make_fake_bundle(tmp_path / "bundles")
    packed = pack_bundle(bundle, tmp_path / "zoo")
    assert packed.zip_path == tmp_path / "zoo" / "demo_bundle_v0.1.0.zip"
    with zipfile.ZipFile(packed.zip_path) as archive:
        files = sorted(n for n in archive.namelist() if not n.endswith("/"))
        assert archive.testzip() is None
        assert archive.read("demo_bundle/models/model.pt") == b"weights"
        infos = archive.infolist()
    assert files == [
        "demo_bundle/LICENSE",
        "demo_bundle/configs/inference.json",
        "demo_bundle/configs/metadata.json",
        "demo_bundle/docs/README.md",
        "demo_bundle/models/model.pt",
    ]
    assert {n.split("/")[0] for n in packed.members} == {"demo_bundle"}
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
    assert {(i.external_attr >> 16) & 0o777 for i in infos if not i.is_dir()} == {0o644}
    data = packed.zip_path.read_bytes()
    assert packed.sha1 == hashlib.sha1(data).hexdigest()
    assert packed.sha256 == hashlib.sha256(data).hexdigest()
    sha_file = packed.zip_path.with_name(packed.zip_path.name + ".sha256")
    assert sha_file.read_text() == f"{hashlib.sha256(data).hexdigest()}  demo_bundle_v0.1.0.zip\n"


def test_packing_twice_gives_identical_bytes(tmp_path: Path) -> None:
    bundle = make_fake_bundle(tmp_path / "bundles")
    first = pack_bundle(bundle, tmp_path / "a").zip_path.read_bytes()
    # new modification times and permissions must not change the zip
    time.sleep(1.1)
    for path in bundle.rglob("*"):
        os.utime(path)
    (bundle / "LICENSE").chmod(0o600)
    second = pack_bundle(bundle, tmp_path / "b").zip_path.read_bytes()
    assert first == second
    (bundle / "LICENSE").write_text("changed\n")
    assert pack_bundle(bundle, tmp_path / "c").zip_path.read_bytes() != first


def test_pack_zoo_index_format_and_base_url(tmp_path: Path) -> None:
    make_fake_bundle(tmp_path / "bundles", "alpha", "0.2.0")
    make_fake_bundle(tmp_path / "bundles", "beta", "1.0.0", weights=None)
    index = pack_zoo(tmp_path / "bundles", tmp_path / "zoo", base_url="https://example.org/zoo/")
    written = json.loads((tmp_path / "zoo" / "model_info.json").read_text())
    assert written == index
    assert sorted(index) == ["alpha_v0.2.0", "beta_v1.0.0"]
    for key, entry in index.items():
        data = (tmp_path / "zoo" / f"{key}.zip").read_bytes()
        assert entry == {
            "checksum": hashlib.sha1(data).hexdigest(),  # MONAI's key
            "sha256": hashlib.sha256(data).hexdigest(),
            "source": f"https://example.org/zoo/{key}.zip",
        }
    # a new version joins the index; the old one stays downloadable
    meta_file = tmp_path / "bundles" / "alpha" / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["version"] = "0.10.0"
    meta_file.write_text(json.dumps(meta))
    index = pack_zoo(tmp_path / "bundles", tmp_path / "zoo")
    assert sorted(index) == ["alpha_v0.10.0", "alpha_v0.2.0", "beta_v1.0.0"]
    assert index["alpha_v0.10.0"]["source"] == "alpha_v0.10.0.zip"
    # one bundle by name; an unknown name lists the bundles
    assert sorted(pack_zoo(tmp_path / "bundles", tmp_path / "one", names=["beta"])) == ["beta_v1.0.0"]
    with pytest.raises(UnknownNameError, match=r"'gamma'.*alpha.*beta"):
        pack_zoo(tmp_path / "bundles", tmp_path / "two", names=["gamma"])


def test_pack_refuses_metadata_without_medsegzoo_version(tmp_path: Path) -> None:
    make_fake_bundle(tmp_path / "bundles", "good")
    make_fake_bundle(tmp_path / "bundles", "bad", medsegzoo_version=None)
    with pytest.raises(DataValidationError, match=r"bad/configs/metadata.json.*medsegzoo"):
        pack_zoo(tmp_path / "bundles", tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()  # checked before anything is written


def test_pack_refuses_link_leaving_the_bundle(tmp_path: Path) -> None:
    bundle = make_fake_bundle(tmp_path / "bundles")
    (tmp_path / "secret.txt").write_text("x")
    (bundle / "docs" / "leak.md").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(Exception, match="links outside the bundle"):
        bundle_files(bundle)


def test_repository_bundles_pack_with_the_cli(tmp_path: Path) -> None:
    """Every bundle of the repository names its medsegzoo version and packs; two runs agree."""
    outs = []
    for out in ("zoo1", "zoo2"):
        proc = subprocess.run([sys.executable, "-m", "medsegzoo", "zoo", "pack", "--bundles-dir",
                               str(REPO_ROOT / "bundles"), "--out", str(tmp_path / out)],
                              check=False, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads((tmp_path / out / "model_info.json").read_text()))
    assert outs[0] == outs[1]
    names = {key.rpartition("_v")[0] for key in outs[0]}
    assert names == {p.name for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs").is_dir()}
    for key in outs[0]:
        with zipfile.ZipFile(tmp_path / "zoo1" / f"{key}.zip") as archive:
            top = {n.split("/")[0] for n in archive.namelist()}
            assert top == {key.rpartition("_v")[0]}
            assert not [n for n in archive.namelist() if "__pycache__" in n or "/eval/" in n or "/logs/" in n]


def test_pack_carries_inference_files_not_training_state(tmp_path: Path) -> None:
    """models/: the inference weights and what inference reads beside them; no resumable state."""
    bundle = make_fake_bundle(tmp_path / "bundles", model_files={
        "fingerprint.json": b"{}\n", "text_embeddings.pt": b"emb", "checkpoint_final.pt": b"state",
        "model_best.pt": b"best", "checkpoint_epoch=2.pt": b"old",
    })
    packed = pack_bundle(bundle, tmp_path / "zoo")
    with zipfile.ZipFile(packed.zip_path) as archive:
        models = sorted(n for n in archive.namelist() if n.startswith("demo_bundle/models/") and not n.endswith("/"))
        assert archive.read("demo_bundle/models/fingerprint.json") == b"{}\n"
    assert models == ["demo_bundle/models/fingerprint.json", "demo_bundle/models/model.pt",
                      "demo_bundle/models/text_embeddings.pt"]


def _installed(distribution: str) -> str:
    from importlib.metadata import version

    from packaging.version import Version

    return Version(version(distribution)).public


def test_packed_metadata_states_the_installed_versions(tmp_path: Path) -> None:
    bundle = make_fake_bundle(tmp_path / "bundles")
    meta_file = bundle / "configs" / "metadata.json"
    source = json.loads(meta_file.read_text())
    source.update({"pytorch_version": "2.15.0", "monai_version": "0.0.1"})  # typed by hand, wrong
    source["required_packages_version"]["pytorch-ignite"] = "0.0.1"
    meta_file.write_text(json.dumps(source, indent=4) + "\n")
    before = meta_file.read_bytes()
    packed = pack_bundle(bundle, tmp_path / "zoo")
    with zipfile.ZipFile(packed.zip_path) as archive:
        text = archive.read("demo_bundle/configs/metadata.json").decode()
    meta = json.loads(text)
    assert meta["pytorch_version"] == _installed("torch") and "+" not in meta["pytorch_version"]
    assert meta["monai_version"] == _installed("monai") and meta["numpy_version"] == _installed("numpy")
    assert meta["required_packages_version"] == {
        "nibabel": _installed("nibabel"), "medsegzoo": _installed("medsegzoo"), "pytorch-ignite": _installed("pytorch-ignite"),
    }
    assert list(meta)[: len(source)] == list(source)  # key order kept
    assert text == json.dumps(meta, indent=4) + "\n"  # formatted as the configs are
    assert "pip_requirements" not in meta  # no served wheel, no URL
    assert meta_file.read_bytes() == before  # the source is not touched


def test_pack_refuses_a_package_that_is_not_installed(tmp_path: Path) -> None:
    bundle = make_fake_bundle(tmp_path / "bundles")
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["required_packages_version"]["surely-not-installed-pkg"] = "1.0"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match=r"metadata.json: required_packages_version.surely-not-installed-pkg"):
        pack_zoo(tmp_path / "bundles", tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()
