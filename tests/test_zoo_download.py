"""medsegzoo.zoo.index/download/serve: version resolution, verified download, refusals leave nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from zoo_utils import make_fake_bundle, write_zip

from medsegzoo.errors import DataValidationError, LayoutError, UnknownNameError
from medsegzoo.zoo.download import download_bundle
from medsegzoo.zoo.index import read_index, resolve_entry
from medsegzoo.zoo.pack import file_digest, pack_zoo
from medsegzoo.zoo.serve import serving

META = b'{"version": "0.1.0", "required_packages_version": {"medsegzoo": "0.1.0"}}'


def _zoo(tmp_path: Path, versions: tuple[str, ...] = ("0.9.0", "0.10.0", "0.2.0")) -> Path:
    """A zoo holding bundle 'demo' at several versions (packed one after another)."""
    zoo = tmp_path / "zoo"
    for version in versions:
        root = tmp_path / f"src_{version}"
        make_fake_bundle(root, "demo", version, weights=version.encode())
        pack_zoo(root, zoo)
    return zoo


def _index_with(tmp_path: Path, name: str, zip_path: Path) -> Path:
    """An index naming ``zip_path`` (with its true sha1) as ``name`` 0.1.0."""
    index = tmp_path / "index.json"
    index.write_text(json.dumps({f"{name}_v0.1.0": {"checksum": file_digest(zip_path, "sha1"), "source": str(zip_path)}}))
    return index


def _assert_nothing_left(dest: Path) -> None:
    assert not dest.exists() or list(dest.iterdir()) == []


def test_latest_version_is_sorted_as_versions(tmp_path: Path) -> None:
    zoo = _zoo(tmp_path)
    entries = read_index(zoo / "model_info.json")
    assert resolve_entry(entries, "demo").version == "0.10.0"  # a string sort would say 0.9.0
    assert resolve_entry(entries, "demo", "0.2.0").source == str(zoo.resolve() / "demo_v0.2.0.zip")
    target = download_bundle("demo", zoo / "model_info.json", tmp_path / "out")
    assert target == tmp_path / "out" / "demo"
    assert (target / "models" / "model.pt").read_bytes() == b"0.10.0"
    assert json.loads((target / "configs" / "metadata.json").read_text())["version"] == "0.10.0"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["demo"]  # no temporaries


def test_download_over_http_and_cli(tmp_path: Path) -> None:
    zoo = _zoo(tmp_path, ("0.1.0",))
    with serving(zoo) as url:
        assert url.startswith("http://127.0.0.1:")
        target = download_bundle("demo", url + "model_info.json", tmp_path / "http", version="0.1.0")
        assert (target / "docs" / "README.md").read_text() == "# demo\n"
        proc = subprocess.run([sys.executable, "-m", "medsegzoo", "zoo", "download", "demo", "--index",
                               url + "model_info.json", "--bundle-dir", str(tmp_path / "cli")],
                              check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli" / "demo" / "LICENSE").read_text() == "Apache-2.0\n"
    # an existing bundle folder is not overwritten without --force, and stays intact
    with pytest.raises(LayoutError, match="exists already"):
        download_bundle("demo", zoo / "model_info.json", tmp_path / "cli")
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["demo"]
    (tmp_path / "cli" / "demo" / "LICENSE").write_text("old")
    download_bundle("demo", zoo / "model_info.json", tmp_path / "cli", force=True)
    assert (tmp_path / "cli" / "demo" / "LICENSE").read_text() == "Apache-2.0\n"
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["demo"]


def test_unknown_name_or_version_lists_the_index(tmp_path: Path) -> None:
    zoo = _zoo(tmp_path, ("0.1.0", "0.2.0"))
    with pytest.raises(UnknownNameError, match=r"'nope'.*it has: demo"):
        download_bundle("nope", zoo / "model_info.json", tmp_path / "out")
    with pytest.raises(UnknownNameError, match=r"no version '9.9'.*0\.1\.0, 0\.2\.0"):
        download_bundle("demo", zoo / "model_info.json", tmp_path / "out", version="9.9")
    _assert_nothing_left(tmp_path / "out")
    proc = subprocess.run([sys.executable, "-m", "medsegzoo", "zoo", "download", "nope", "--index",
                           str(zoo / "model_info.json"), "--bundle-dir", str(tmp_path / "out")],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "it has: demo" in proc.stderr
    _assert_nothing_left(tmp_path / "out")


def test_tampered_zip_fails_the_checksum(tmp_path: Path) -> None:
    zoo = _zoo(tmp_path, ("0.1.0",))
    zip_path = zoo / "demo_v0.1.0.zip"
    data = bytearray(zip_path.read_bytes())
    (zoo / "demo_v0.1.0.zip.orig").write_bytes(bytes(data))
    data[len(data) // 2] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "other").write_text("keep")  # a user's file beside the bundles
    with pytest.raises(DataValidationError, match="sha256 checksum mismatch"):
        download_bundle("demo", zoo / "model_info.json", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["other"]
    # an index without sha256 (MONAI's format, or written before medsegzoo added it): sha1
    index = _index_with(tmp_path, "demo", zoo / "demo_v0.1.0.zip.orig")  # the true sha1 ...
    index.write_text(index.read_text().replace(".zip.orig", ".zip"))  # ... of another file
    with pytest.raises(DataValidationError, match="sha1 checksum mismatch"):
        download_bundle("demo", index, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["other"]


@pytest.mark.parametrize(
    ("entries", "links", "message"),
    [
        ({"demo/configs/metadata.json": META, "demo/../../evil.txt": b"x"}, None, r"'\.\.' \(zip-slip\)"),
        ({"demo/configs/metadata.json": META, "/tmp/evil.txt": b"x"}, None, "absolute"),
        ({"configs/metadata.json": META}, None, "outside the bundle folder 'demo/'"),
        ({"demo/configs/metadata.json": META, "other/x.txt": b"x"}, None, "outside the bundle folder"),
        ({"demo/configs/metadata.json": META}, {"demo/docs/link": "../../../etc/passwd"}, "leaves the bundle"),
        ({"demo/configs/metadata.json": META}, {"demo/docs/link": "/etc/passwd"}, "leaves the bundle"),
        ({"demo/docs/README.md": b"x"}, None, "no demo/configs/metadata.json"),
    ],
)
def test_unsafe_zips_are_refused_without_leftovers(tmp_path: Path, entries: dict, links: dict | None,
                                                   message: str) -> None:
    zip_path = write_zip(tmp_path / "demo_v0.1.0.zip", entries, links)
    index = _index_with(tmp_path, "demo", zip_path)
    with pytest.raises(LayoutError, match=message):
        download_bundle("demo", index, tmp_path / "out")
    _assert_nothing_left(tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_link_inside_the_bundle_is_kept(tmp_path: Path) -> None:
    zip_path = write_zip(tmp_path / "demo_v0.1.0.zip", {"demo/configs/metadata.json": META},
                         {"demo/docs/meta.json": "../configs/metadata.json"})
    target = download_bundle("demo", _index_with(tmp_path, "demo", zip_path), tmp_path / "out")
    assert (target / "docs" / "meta.json").is_symlink()
    assert (target / "docs" / "meta.json").read_bytes() == META


def test_serve_command_binds_loopback_and_serves_the_index(tmp_path: Path) -> None:
    import urllib.request

    zoo = _zoo(tmp_path, ("0.1.0",))
    proc = subprocess.Popen([sys.executable, "-m", "medsegzoo", "zoo", "serve", str(zoo), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "serving DIR at http://127.0.0.1:PORT/ ..."
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "model_info.json", timeout=30) as response:
            assert json.loads(response.read()) == json.loads((zoo / "model_info.json").read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def _spy_opens(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Record (offset asked, resumed) of every zip the download opens."""
    from medsegzoo.zoo import download

    calls: list[tuple[int, bool]] = []
    real = download.open_location

    def spy(location, offset=0, timeout=60.0):
        stream, resumed = real(location, offset, timeout)
        calls.append((offset, resumed))
        return stream, resumed

    monkeypatch.setattr(download, "open_location", spy)
    return calls


@pytest.mark.parametrize("over_http", [False, True])
def test_an_interrupted_download_resumes_and_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         over_http: bool) -> None:
    from medsegzoo.zoo import download

    zoo = _zoo(tmp_path, ("0.1.0",))
    data = (zoo / "demo_v0.1.0.zip").read_bytes()
    out = tmp_path / "out"
    real = download.open_location

    def cut(location, offset=0, timeout=60.0):  # the connection drops after 100 bytes
        stream, resumed = real(location, offset, timeout)
        head = stream.read(100)
        stream.close()

        class Dropping:
            def __init__(self) -> None:
                self.sent = False

            def read(self, n=-1):
                if self.sent:
                    raise ConnectionResetError(104, "Connection reset by peer")
                self.sent = True
                return head

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        return Dropping(), resumed

    with serving(zoo) as url:
        index = url + "model_info.json" if over_http else zoo / "model_info.json"
        monkeypatch.setattr(download, "open_location", cut)
        with pytest.raises(DataValidationError, match="download failed .*run the same command again to resume"):
            download_bundle("demo", index, out)
        part = out / ".demo_v0.1.0.zip.part"
        assert part.read_bytes() == data[:100]  # kept, under a name no one takes for the zip
        assert sorted(p.name for p in out.iterdir()) == [part.name]
        monkeypatch.undo()
        calls = _spy_opens(monkeypatch)
        target = download_bundle("demo", index, out)
    assert calls == [(100, True)]  # resumed, not restarted (the loopback server answers Range)
    assert (target / "models" / "model.pt").read_bytes() == b"0.1.0"
    assert sorted(p.name for p in out.iterdir()) == ["demo"]


def test_a_corrupt_part_is_fetched_again_from_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = _zoo(tmp_path, ("0.1.0",))
    out = tmp_path / "out"
    out.mkdir()
    (out / ".demo_v0.1.0.zip.part").write_bytes(b"x" * 50)  # not the zip's first bytes
    calls = _spy_opens(monkeypatch)
    target = download_bundle("demo", zoo / "model_info.json", out)
    assert calls == [(50, True), (0, False)]
    assert (target / "docs" / "README.md").read_text() == "# demo\n"
    assert sorted(p.name for p in out.iterdir()) == ["demo"]


def test_a_complete_part_is_verified_not_fetched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = _zoo(tmp_path, ("0.1.0",))
    out = tmp_path / "out"
    out.mkdir()
    data = (zoo / "demo_v0.1.0.zip").read_bytes()
    (out / ".demo_v0.1.0.zip.part").write_bytes(data)  # killed after the last byte, before the check
    calls = _spy_opens(monkeypatch)
    with serving(zoo) as url:
        download_bundle("demo", url + "model_info.json", out)  # the server answers 416: nothing left
    assert calls == [(len(data), True)]
    assert sorted(p.name for p in out.iterdir()) == ["demo"]


def test_download_streams_without_reading_the_zip_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracemalloc

    root = tmp_path / "src"
    bundle = make_fake_bundle(root, "demo", "0.1.0")
    (bundle / "models" / "model.pt").write_bytes(bytes(range(256)) * (40 << 12))  # 40 MiB
    tracemalloc.start()
    try:
        pack_zoo(root, tmp_path / "zoo", file_limit=64 << 20)  # in the zip, not served beside it
        _, pack_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        target = download_bundle("demo", tmp_path / "zoo" / "model_info.json", tmp_path / "out")
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (target / "models" / "model.pt").stat().st_size == 40 << 20
    assert pack_peak < 8 << 20 and download_peak < 8 << 20, (pack_peak, download_peak)  # blocks of 1 MiB
