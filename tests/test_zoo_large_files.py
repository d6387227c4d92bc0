"""Files above the model zoo's size limit: served beside the zip, named in large_files.yml.

``medsegzoo zoo pack`` copies such a file to ``<name>_v<version>_files/<path>`` and writes the
zip's ``large_files.yml`` (path, URL, sha256). The zoo's CI fetches those files with MONAI's
``download_url`` from that list, which is what ``python -m monai.bundle download_large_files``
runs: the tests fetch them that way from a loopback-served zoo, and with ``medsegzoo zoo
download``, which verifies the hash and keeps nothing on a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest
import yaml
from bundle_utils import MEDSEGZOO, run_command
from zoo_utils import make_fake_bundle

from medsegzoo.errors import DataValidationError
from medsegzoo.zoo.download import download_bundle
from medsegzoo.zoo.pack import pack_zoo
from medsegzoo.zoo.serve import serving

LIMIT = 1000  # bytes: the tests' stand-in for the zoo's 25 MB
WEIGHTS = os.urandom(3 * LIMIT)
SMALL = b"{\"plan\": 1}\n"  # below the limit: stays in the zip


def _bundle(root: Path) -> Path:
    return make_fake_bundle(root, "demo", "0.1.0", weights=WEIGHTS, model_files={"fingerprint.json": SMALL})


def test_large_file_is_served_beside_the_zip_and_named_with_its_hash(tmp_path: Path) -> None:
    _bundle(tmp_path / "bundles")
    zoo = tmp_path / "zoo"
    pack_zoo(tmp_path / "bundles", zoo, base_url="https://example.org/zoo/", file_limit=LIMIT)
    served = zoo / "demo_v0.1.0_files" / "models" / "model.pt"
    assert served.read_bytes() == WEIGHTS
    with zipfile.ZipFile(zoo / "demo_v0.1.0.zip") as archive:
        names = archive.namelist()
        listed = yaml.safe_load(archive.read("demo/large_files.yml"))
        assert archive.read("demo/models/fingerprint.json") == SMALL
    assert "demo/models/model.pt" not in names
    assert listed == {"large_files": [{
        "path": "models/model.pt",
        "url": "https://example.org/zoo/demo_v0.1.0_files/models/model.pt",
        "hash_val": hashlib.sha256(WEIGHTS).hexdigest(),
        "hash_type": "sha256",
    }]}


def test_large_file_without_base_url_is_refused_before_writing(tmp_path: Path) -> None:
    _bundle(tmp_path / "bundles")
    with pytest.raises(DataValidationError, match=r"demo/models/model.pt: .*--base-url"):
        pack_zoo(tmp_path / "bundles", tmp_path / "zoo", file_limit=LIMIT)
    assert not (tmp_path / "zoo").exists()
    # the CLI says the same in one line, with the default limit of 25 MB for a 26 MB file
    (tmp_path / "bundles" / "demo" / "models" / "model.pt").write_bytes(b"\0" * 26_000_000)
    proc = run_command([*MEDSEGZOO, "zoo", "pack", "--bundles-dir", tmp_path / "bundles", "--out", tmp_path / "zoo"],
                       check=False)
    assert proc.returncode != 0 and "26.0 MB is above the model zoo's limit of 25 MB" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "zoo").exists()


def test_source_bundle_with_its_own_large_files_list_is_refused(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "bundles")
    (bundle / "large_files.yml").write_text("large_files: []\n")
    with pytest.raises(DataValidationError, match=r"demo/large_files.yml: a source bundle carries no large_files"):
        pack_zoo(tmp_path / "bundles", tmp_path / "zoo", base_url="http://127.0.0.1:1/", file_limit=LIMIT)


def test_monai_and_medsegzoo_fetch_the_large_files_from_the_served_zoo(tmp_path: Path) -> None:
    from monai.bundle import download as monai_download
    from monai.bundle import download_large_files

    _bundle(tmp_path / "bundles")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    with serving(zoo) as url:  # the URL is known before packing, as for a real host
        pack_zoo(tmp_path / "bundles", zoo, base_url=url, file_limit=LIMIT)
        # the model zoo's way: MONAI's download, then the large files of the bundle's list (the
        # functions behind `python -m monai.bundle download` / `download_large_files`, in process)
        monai_download(name="demo", url=url + "demo_v0.1.0.zip", bundle_dir=str(tmp_path / "monai"))
        monai_bundle = tmp_path / "monai" / "demo"
        assert not (monai_bundle / "models" / "model.pt").exists()
        download_large_files(bundle_path=str(monai_bundle))
        assert (monai_bundle / "models" / "model.pt").read_bytes() == WEIGHTS
        # medsegzoo's download fetches and verifies them itself
        ours = download_bundle("demo", url + "model_info.json", tmp_path / "ours")
        assert (ours / "models" / "model.pt").read_bytes() == WEIGHTS
        assert (ours / "models" / "fingerprint.json").read_bytes() == SMALL
        assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["demo"]  # no temporaries

        # a changed file on the server: both refuse it; ours keeps nothing
        (zoo / "demo_v0.1.0_files" / "models" / "model.pt").write_bytes(WEIGHTS[::-1])
        with pytest.raises(DataValidationError, match=r"sha256 checksum mismatch for models/model.pt"):
            download_bundle("demo", url + "model_info.json", tmp_path / "again")
        assert not (tmp_path / "again").exists() or list((tmp_path / "again").iterdir()) == []
        (monai_bundle / "models" / "model.pt").unlink()
        with pytest.raises(Exception, match="sha256 hash check of downloaded file failed"):
            download_large_files(bundle_path=str(monai_bundle))
        assert not (monai_bundle / "models" / "model.pt").exists()


def test_large_files_list_without_hash_or_leaving_the_bundle_is_refused(tmp_path: Path) -> None:
    from medsegzoo.errors import LayoutError
    from medsegzoo.zoo.download import read_large_files

    root = tmp_path / "b"
    root.mkdir()
    (root / "large_files.yml").write_text('large_files:\n  - path: "models/model.pt"\n    url: "http://x/m.pt"\n')
    with pytest.raises(DataValidationError, match=r"large_files.yml: large_files\[0\] \(models/model.pt\) has no hash_val"):
        read_large_files(root)
    (root / "large_files.yml").write_text(json.dumps({"large_files": [
        {"path": "../outside.pt", "url": "http://x/m.pt", "hash_val": "ab", "hash_type": "sha256"}]}))
    with pytest.raises(LayoutError, match=r"path '../outside.pt' leaves the bundle folder"):
        read_large_files(root)
