"""Verified downloads against a local HTTP server with injectable faults, archives in the
real layouts of ImageNet-A and ImageNetV2, and the message for datasets users must supply."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import multiprocessing
import os
import re
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interpsharp.download import (
    ArchiveError,
    ChecksumError,
    DatasetMissingError,
    DownloadError,
    read_manifest,
    recheck_file,
    record_in_manifest,
    require_local_dataset,
    resolve_source,
    unpack_archive,
    verify_file,
)
from interpsharp.download import download_file as _download_file

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def download_file(*args, **kwargs):
    """The function under test, without waiting between retries or drawing progress bars."""
    kwargs.setdefault("backoff", 0.0)
    kwargs.setdefault("timeout", 10.0)
    kwargs.setdefault("progress", False)
    return _download_file(*args, **kwargs)


class FaultyHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` with Range support; ``faults[path]`` injects one kind of failure:

    - ``("cut", k)``: the first request sends the full Content-Length but only k bytes, then
      closes the connection;
    - ``("truncate", k)``: every answer announces the full length and sends at most k bytes;
    - ``("ignore_range",)``: always answers 200 with the whole file;
    - ``("fail", n, status)``: the first n requests get ``status``.
    """

    files: dict[str, bytes] = {}
    faults: dict[str, tuple] = {}
    log: list[tuple[str, str | None]] = []

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        path = self.path
        self.log.append((path, self.headers.get("Range")))
        count = sum(1 for p, _ in self.log if p == path)
        if path not in self.files:
            self.send_error(404, "Not Found")
            return
        body = self.files[path]
        fault = self.faults.get(path, ())
        if fault and fault[0] == "fail" and count <= fault[1]:
            self.send_error(fault[2])
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not (fault and fault[0] == "ignore_range"):
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        chunk = body[start:]
        if fault and fault[0] == "cut" and count == 1:
            chunk = chunk[: fault[1]]
        if fault and fault[0] == "truncate":
            chunk = chunk[: max(0, fault[1] - start)]
        self.wfile.write(chunk)
        self.wfile.flush()


@pytest.fixture
def server():
    """A fresh server per test on 127.0.0.1, with its own file table, faults and request log."""
    handler = type("Handler", (FaultyHandler,), {"files": {"/data.bin": PAYLOAD}, "faults": {}, "log": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield handler
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_records(server, tmp_path):
    manifest = tmp_path / "manifest.json"
    record = download_file(f"{server.url}/data.bin", tmp_path / "d" / "data.bin", manifest=manifest)
    assert (tmp_path / "d" / "data.bin").read_bytes() == PAYLOAD
    assert record.sha256 == PAYLOAD_SHA and record.size == len(PAYLOAD) and record.downloaded
    assert not (tmp_path / "d" / "data.bin.part").exists()
    entry = read_manifest(manifest)["data.bin"]
    assert entry["sha256"] == PAYLOAD_SHA and entry["size"] == len(PAYLOAD) and entry["url"].endswith("/data.bin")
    assert verify_file(tmp_path / "d" / "data.bin", manifest) == PAYLOAD_SHA
    # A second call verifies the existing file instead of fetching it again.
    again = download_file(f"{server.url}/data.bin", tmp_path / "d" / "data.bin", manifest=manifest)
    assert not again.downloaded and again.sha256 == PAYLOAD_SHA and len(server.log) == 1


def test_resume_after_connection_cut(server, tmp_path):
    server.faults["/data.bin"] = ("cut", 100_000)
    record = download_file(f"{server.url}/data.bin", tmp_path / "data.bin", expected_sha256=PAYLOAD_SHA)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert record.requests == 2
    assert server.log[0] == ("/data.bin", None)
    assert server.log[1] == ("/data.bin", "bytes=100000-")


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(b"x" * 5000)  # stale bytes that are not the file's prefix
    server.faults["/data.bin"] = ("ignore_range",)
    download_file(f"{server.url}/data.bin", tmp_path / "data.bin", expected_sha256=PAYLOAD_SHA)
    assert server.log == [("/data.bin", "bytes=5000-")]
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_5xx_is_retried_with_bounded_attempts(server, tmp_path):
    server.faults["/data.bin"] = ("fail", 2, 503)
    record = download_file(f"{server.url}/data.bin", tmp_path / "data.bin", retries=2)
    assert record.requests == 3 and (tmp_path / "data.bin").read_bytes() == PAYLOAD
    server.faults["/data.bin"] = ("fail", 10, 503)
    with pytest.raises(DownloadError, match="giving up after 3 attempts"):
        download_file(f"{server.url}/data.bin", tmp_path / "other.bin", retries=2)


def test_404_fails_at_once_naming_the_url(server, tmp_path):
    url = f"{server.url}/missing.pt"
    with pytest.raises(DownloadError, match=re.escape(url) + ".*404"):
        download_file(url, tmp_path / "missing.pt", retries=5)
    assert len(server.log) == 1
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as err:
        download_file(f"{server.url}/data.bin", tmp_path / "data.bin", expected_sha256=wrong)
    message = str(err.value)
    assert server.url in message and wrong in message and PAYLOAD_SHA in message
    assert list(tmp_path.iterdir()) == []


def test_truncated_body_is_detected(server, tmp_path):
    server.faults["/data.bin"] = ("truncate", 200_000)
    with pytest.raises(DownloadError, match="200000 of 300000 bytes"):
        download_file(f"{server.url}/data.bin", tmp_path / "data.bin", retries=2)
    assert not (tmp_path / "data.bin").exists()
    # The received prefix is kept for a later resume, under its .part name only.
    assert (tmp_path / "data.bin.part").read_bytes() == PAYLOAD[:200_000]
    # Once the server is healthy again, the next run resumes from byte 200000.
    server.faults.clear()
    download_file(f"{server.url}/data.bin", tmp_path / "data.bin")
    assert server.log[-1] == ("/data.bin", "bytes=200000-")
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_expected_size_mismatch_is_an_error(server, tmp_path):
    with pytest.raises(ChecksumError, match=f"{len(PAYLOAD)} bytes but {len(PAYLOAD) + 1}"):
        download_file(f"{server.url}/data.bin", tmp_path / "data.bin", expected_size=len(PAYLOAD) + 1)
    assert list(tmp_path.iterdir()) == []


def test_tampered_file_fails_later_verification(server, tmp_path):
    manifest = tmp_path / "manifest.json"
    dest = tmp_path / "data.bin"
    download_file(f"{server.url}/data.bin", dest, manifest=manifest)
    tampered = bytearray(PAYLOAD)
    tampered[12345] ^= 1
    dest.write_bytes(bytes(tampered))
    with pytest.raises(ChecksumError, match=re.escape(str(manifest))) as err:
        verify_file(dest, manifest)
    assert PAYLOAD_SHA in str(err.value) and hashlib.sha256(tampered).hexdigest() in str(err.value)
    with pytest.raises(ChecksumError):
        download_file(f"{server.url}/data.bin", dest, manifest=manifest)
    assert len(server.log) == 1  # the tampered file was not silently replaced
    # A pinned sha256 wins over the manifest.
    assert verify_file(dest, manifest, expected_sha256=hashlib.sha256(tampered).hexdigest())


def test_recorded_hash_guards_a_redownload(server, tmp_path):
    """After the file is deleted, the manifest's hash still pins what the URL must serve."""
    manifest = tmp_path / "manifest.json"
    download_file(f"{server.url}/data.bin", tmp_path / "data.bin", manifest=manifest)
    (tmp_path / "data.bin").unlink()
    server.files["/data.bin"] = PAYLOAD[::-1]
    with pytest.raises(ChecksumError, match="manifest"):
        download_file(f"{server.url}/data.bin", tmp_path / "data.bin", manifest=manifest)
    assert not (tmp_path / "data.bin").exists()


def _record_many(manifest: str, worker: int) -> None:
    for i in range(15):
        record_in_manifest(manifest, f"w{worker}_{i}", {"sha256": f"{worker:02d}{i:062d}"})


def test_manifest_survives_concurrent_writers(tmp_path):
    manifest = str(tmp_path / "manifest.json")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_record_many, args=(manifest, w)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert set(read_manifest(manifest)) == {f"w{w}_{i}" for w in range(4) for i in range(15)}


def test_resolve_source_applies_config():
    soup = resolve_source("model_soups", index=7)
    assert soup.url == "https://github.com/mlfoundations/model-soups/releases/download/v0.0.2/model_7.pt"
    source = resolve_source("imagenet-a", {"layout": "imagenet-a", "url": "http://mirror/a.tar", "sha256": None})
    assert source.url == "http://mirror/a.tar" and source.unpacked_root == "imagenet-a"
    with pytest.raises(KeyError, match="needs an index"):
        resolve_source("model_soups")


# --------------------------------------------------------------------------- archives


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


IMAGENET_A_WNIDS = [f"n{1440764 + 7919 * k:08d}" for k in range(200)]  # any 200 WordNet-style ids


def test_imagenet_a_layout_unpacks_and_caches(tmp_path):
    from interpsharp.data import load_cache
    from interpsharp.datasets import build_cache, imagenet_class_subset

    archive = tmp_path / "imagenet-a.tar"
    with tarfile.open(archive, "w") as tf:
        _add(tf, "imagenet-a/README.txt", b"ImageNet-A\n")
        for k, wnid in enumerate(reversed(IMAGENET_A_WNIDS)):  # written out of order on purpose
            _add(tf, f"imagenet-a/{wnid}/0.png", _png((199 - k, 7, 11)))
    root = unpack_archive(archive, tmp_path / "unpacked")
    assert root == tmp_path / "unpacked" / "imagenet-a"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == IMAGENET_A_WNIDS
    assert [p.name for p in (tmp_path / "unpacked").iterdir()] == ["imagenet-a"]  # no temp folder left

    cache = load_cache(build_cache("imagenet-a", root, tmp_path / "cache", image_size=8, progress=False))
    assert len(cache) == 200 and cache.class_subset == imagenet_class_subset("imagenet_a")
    # Folder k in sorted order holds red value k, so the label must equal the pixel's red value.
    np.testing.assert_array_equal(cache.images[:, 0, 0, 0], cache.labels)


def test_imagenetv2_layout_unpacks_and_caches(tmp_path):
    from interpsharp.data import load_cache
    from interpsharp.datasets import build_cache

    archive = tmp_path / "imagenetv2-matched-frequency.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for k in range(1000):
            _add(tf, f"imagenetv2-matched-frequency-format-val/{k}/img.png", _png((k % 256, k // 256, 0)))
    root = unpack_archive(archive, tmp_path)
    assert root.name == "imagenetv2-matched-frequency-format-val"
    assert len([p for p in root.iterdir() if p.is_dir()]) == 1000

    cache = load_cache(build_cache("imagenetv2", root, tmp_path / "cache", image_size=8, progress=False))
    decoded = cache.images[:, 0, 0, 0].astype(int) + 256 * cache.images[:, 1, 0, 0].astype(int)
    np.testing.assert_array_equal(decoded, cache.labels)  # folder "10" is class 10, not the third
    assert cache.class_subset is None and len(cache.classnames) == 1000


def test_zip_without_single_root_gets_a_folder_named_after_it(tmp_path):
    archive = tmp_path / "loose.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/x.txt", "1")
        zf.writestr("b.txt", "2")
    root = unpack_archive(archive, tmp_path / "out")
    assert root == tmp_path / "out" / "loose"
    assert (root / "a" / "x.txt").read_text() == "1" and (root / "b.txt").read_text() == "2"


@pytest.mark.parametrize("kind", ["tar", "zip", "symlink"])
def test_path_traversal_is_refused(tmp_path, kind):
    archive = tmp_path / ("evil.zip" if kind == "zip" else "evil.tar")
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("root/ok.txt", "fine")
            zf.writestr("../escaped.txt", "bad")
    else:
        with tarfile.open(archive, "w") as tf:
            _add(tf, "root/ok.txt", b"fine")
            if kind == "tar":
                _add(tf, "root/../../escaped.txt", b"bad")
            else:
                link = tarfile.TarInfo("root/link")
                link.type, link.linkname = tarfile.SYMTYPE, "../../escaped.txt"
                tf.addfile(link)
    out = tmp_path / "out"
    with pytest.raises(ArchiveError, match="outside the target folder"):
        unpack_archive(archive, out)
    assert not (tmp_path / "escaped.txt").exists()
    assert list(out.iterdir()) == []  # the partial unpack was removed


def test_unknown_archive_format(tmp_path):
    with pytest.raises(ArchiveError, match=r"\.tar, \.tar\.gz, \.tgz or \.zip"):
        unpack_archive(tmp_path / "data.rar", tmp_path)


# --------------------------------------------------------------------------- user-supplied data


def test_missing_dataset_says_where_to_get_it(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        require_local_dataset(tmp_path / "imagenet" / "val", "imagenet", "imagenet")
    message = str(err.value)
    assert str(tmp_path / "imagenet" / "val") in message and "does not exist" in message
    assert "image-net.org" in message and "1000 WordNet-ID folders" in message

    with pytest.raises(DatasetMissingError, match="objectnet.dev"):
        require_local_dataset(tmp_path / "objectnet-1.0", "objectnet", "objectnet")
    with pytest.raises(DatasetMissingError, match="HaohanWang/ImageNet-Sketch"):
        require_local_dataset(tmp_path, "imagenet-sketch", "imagenet-sketch")  # exists but empty


def test_dataset_in_wrong_layout_is_reported(tmp_path):
    sketch = tmp_path / "ImageNet-Sketch"
    for wnid in IMAGENET_A_WNIDS[:3]:
        (sketch / "sketch" / wnid).mkdir(parents=True)
    with pytest.raises(DatasetMissingError, match=r"found 1.*sketch.*1000 WordNet-ID folders"):
        require_local_dataset(sketch, "imagenet-sketch", "imagenet-sketch")  # the parent of sketch/


def test_present_dataset_passes(tmp_path):
    root = tmp_path / "val"
    for k in range(1000):
        folder = root / f"n{k:08d}"
        folder.mkdir(parents=True)
        (folder / "x.JPEG").write_bytes(b"")  # only listed, never decoded
    assert require_local_dataset(root, "imagenet", "imagenet") == root


def test_cli_download_verify_and_errors(server, tmp_path, capsys):
    from interpsharp.cli import main

    dest, manifest = tmp_path / "data.bin", tmp_path / "manifest.json"
    assert main(["download", f"{server.url}/data.bin", "-o", str(dest), "--manifest", str(manifest), "--quiet"]) == 0
    assert PAYLOAD_SHA in capsys.readouterr().out
    assert main(["download", "unused", "-o", str(dest), "--manifest", str(manifest), "--verify-only"]) == 0
    dest.write_bytes(b"changed")
    assert main(["download", "unused", "-o", str(dest), "--manifest", str(manifest), "--verify-only"]) == 2
    assert main(["download", f"{server.url}/nope.tar", "-o", str(tmp_path / "nope.tar"), "--quiet"]) == 2
    assert "HTTP 404" in capsys.readouterr().err


def test_recheck_hashes_only_files_changed_since_they_were_hashed(server, tmp_path):
    manifest = tmp_path / "manifest.json"
    dest = tmp_path / "data.bin"
    download_file(f"{server.url}/data.bin", dest, manifest=manifest)
    assert read_manifest(manifest)["data.bin"]["mtime_ns"] == dest.stat().st_mtime_ns
    assert recheck_file(dest, manifest) is False  # size and mtime as recorded: not hashed again
    # Proof that the quick path does not hash: a wrong recorded hash goes unnoticed while the
    # file is untouched, and is caught as soon as its modification time moves.
    entry = read_manifest(manifest)["data.bin"]
    record_in_manifest(manifest, "data.bin", {**entry, "sha256": "0" * 64})
    assert recheck_file(dest, manifest) is False
    os.utime(dest, ns=(dest.stat().st_atime_ns, dest.stat().st_mtime_ns + 10**9))
    with pytest.raises(ChecksumError, match="data.bin: sha256"):
        recheck_file(dest, manifest)
    record_in_manifest(manifest, "data.bin", entry)
    assert recheck_file(dest, manifest) is True  # touched, same bytes: hashed, and the new mtime recorded
    assert read_manifest(manifest)["data.bin"]["mtime_ns"] == dest.stat().st_mtime_ns
    assert recheck_file(dest, manifest) is False
    # A pinned sha256 other than the recorded one is always checked in full.
    with pytest.raises(ChecksumError, match="pinned in the config"):
        recheck_file(dest, manifest, expected_sha256="f" * 64)
