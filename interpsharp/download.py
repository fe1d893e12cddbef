"""Verified downloads: checkpoints and evaluation sets fetched once, checked every time.

The paper world needs about 20 GB from three hosts (GitHub releases, Berkeley, Hugging Face),
over links that drop. Model-soups and the WiSE-FT code download without any check, so a
truncated ``model_3.pt`` or a half-written tar only shows up much later as a confusing error.
Here every file:

- streams into ``<dest>.part`` and resumes with an HTTP Range request after a dropped
  connection (servers that ignore Range and answer 200 restart cleanly from byte 0);
- is retried with exponential backoff on connection errors, 5xx answers and short reads,
  while 404 and other 4xx answers fail at once (retrying cannot fix a wrong URL);
- is renamed to ``dest`` only when its size and sha256 match what is expected, so a file
  under its final name is always complete;
- is recorded in a JSON *manifest* (file name -> url, sha256, size, downloaded_at, mtime_ns):
  the first download records the hash (trust on first use), every later run re-checks it
  (:func:`recheck_file`: hashed again whenever its size or modification time changed); a
  sha256 pinned in the config wins over the manifest.

Archives unpack into a temporary folder that is renamed into place (never a half-unpacked
tree), refusing members that would land outside it. Datasets whose licence forbids
redistribution (ImageNet, ImageNet-Sketch, ObjectNet) cannot be downloaded here;
:func:`require_local_dataset` says where to get them and how the folder must look.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping

from tqdm import tqdm

from interpsharp import __version__

_CHUNK = 1 << 20
#: HTTP statuses worth retrying: the server may answer differently in a moment.
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_THREAD_LOCK = threading.Lock()


class DownloadError(RuntimeError):
    """A download that cannot complete; the message names the URL and what to do."""


class ChecksumError(DownloadError):
    """A file whose size or sha256 differs from the pinned or recorded one."""


class ManifestError(ValueError):
    """A manifest file that cannot be read."""


class ArchiveError(ValueError):
    """An archive of an unknown format, or one with members that would escape its folder."""


class DatasetMissingError(FileNotFoundError):
    """A dataset the user must supply is absent or laid out differently from what is expected."""


@dataclass(frozen=True)
class RemoteSource:
    """Where a file comes from, and what is known about it before downloading it.

    ``unpacked_root`` is the folder an archive unpacks to, holding the class folders (the
    config's ``datasets.sources.<name>.unpacked_root``).
    ``sha256`` stays ``None`` until someone pins it: we never publish a hash we did not
    compute ourselves, the manifest records it on first download instead.
    """

    url: str
    description: str
    sha256: str | None = None
    size: int | None = None
    unpacked_root: str | None = None


#: Default sources of the paper world; the workflow config overrides any field of any entry
#: (see :func:`resolve_source`). ``model_soups`` is a template with ``{i}`` = 0..71.
DEFAULT_SOURCES: dict[str, RemoteSource] = {
    "model_soups": RemoteSource(
        url="https://github.com/mlfoundations/model-soups/releases/download/v0.0.2/model_{i}.pt",
        description="model-soups fine-tuned ViT-B/32 classifier number {i}",
    ),
    "imagenet-a": RemoteSource(
        url="https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
        description="ImageNet-A (7,500 natural adversarial images, 200 classes)",
        unpacked_root="imagenet-a",
    ),
    "imagenet-r": RemoteSource(
        url="https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
        description="ImageNet-R (30,000 renditions, 200 classes)",
        unpacked_root="imagenet-r",
    ),
    "imagenetv2": RemoteSource(
        url="https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz",
        description="ImageNetV2 matched-frequency (10,000 images, 1000 classes)",
        unpacked_root="imagenetv2-matched-frequency-format-val",
    ),
}


def resolve_source(name: str, overrides: Mapping[str, Any] | None = None, index: int | None = None) -> RemoteSource:
    """The registry entry ``name`` with the config's values for it applied.

    ``overrides`` is the config entry (e.g. ``datasets.sources.imagenet-a``); its ``url``,
    ``sha256``, ``size`` and ``unpacked_root`` replace the defaults when not null, other keys (such
    as ``layout``) are not about downloading and are ignored. ``index`` fills ``{i}`` in a
    URL template: ``resolve_source("model_soups", index=3)``.
    """
    if name not in DEFAULT_SOURCES:
        raise KeyError(f"no download source named {name!r}; known: {', '.join(sorted(DEFAULT_SOURCES))}")
    fields = ("url", "sha256", "size", "unpacked_root")
    source = replace(DEFAULT_SOURCES[name], **{k: v for k, v in (overrides or {}).items() if k in fields and v is not None})
    if "{i}" in source.url:
        if index is None:
            raise KeyError(f"download source {name!r}: its URL {source.url} needs an index (the {{i}} in it)")
        source = replace(source, url=source.url.replace("{i}", str(index)), description=source.description.replace("{i}", str(index)))
    return source


@dataclass(frozen=True)
class DownloadRecord:
    """What was fetched (or verified) and where; ``downloaded`` is False for a file already present."""

    url: str
    path: Path
    sha256: str
    size: int
    downloaded_at: str
    downloaded: bool
    requests: int


# --------------------------------------------------------------------------- manifest


@contextlib.contextmanager
def _locked(manifest: Path) -> Iterator[None]:
    """Hold an exclusive POSIX lock beside the manifest.

    Snakemake runs download jobs in parallel and they share one manifest; without the lock two
    read-modify-write cycles could interleave and drop an entry. ``lockf`` (not ``flock``)
    because POSIX locks also work on NFS, where SLURM jobs usually share their files.
    """
    manifest.parent.mkdir(parents=True, exist_ok=True)
    # POSIX locks belong to the process, so threads of one process also need a mutex.
    with _THREAD_LOCK, open(manifest.with_name(manifest.name + ".lock"), "a") as fh:
        fcntl.lockf(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(fh, fcntl.LOCK_UN)


def read_manifest(manifest: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The manifest's entries (empty if the file does not exist yet)."""
    manifest = Path(manifest)
    if not manifest.exists():
        return {}
    try:
        entries = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(
            f"{manifest}: not a valid download manifest ({err}); repair it, or delete it to have "
            f"the hashes recorded again on the next download"
        ) from err
    if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
        raise ManifestError(f"{manifest}: expected a JSON object mapping file names to entries; repair or delete it")
    return entries


def record_in_manifest(manifest: str | os.PathLike, name: str, entry: Mapping[str, Any]) -> None:
    """Set ``manifest[name] = entry`` under the lock, writing the file atomically."""
    manifest = Path(manifest)
    with _locked(manifest):
        entries = read_manifest(manifest)
        entries[name] = dict(entry)
        fd, tmp = tempfile.mkstemp(prefix=f".{manifest.name}.", suffix=".tmp", dir=manifest.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(entries, fh, indent=1, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, manifest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# --------------------------------------------------------------------------- verification


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _expectation(
    name: str, manifest: Path | None, expected_sha256: str | None, expected_size: int | None
) -> tuple[str | None, int | None, str]:
    """Expected hash and size for ``name``, and where they come from (for error messages).

    A pinned value (config) wins over the manifest: it is the user's deliberate statement,
    the manifest only remembers the first download.
    """
    entry = read_manifest(manifest).get(name, {}) if manifest is not None else {}
    if expected_sha256 is not None:
        return expected_sha256.lower(), expected_size, "the sha256 pinned in the config"
    if entry:
        size = expected_size if expected_size is not None else entry.get("size")
        return entry.get("sha256"), size, f"the manifest {manifest} (recorded {entry.get('downloaded_at')} from {entry.get('url')})"
    return None, expected_size, "the expected size"


def verify_file(
    path: str | os.PathLike,
    manifest: str | os.PathLike | None = None,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
) -> str:
    """Re-check a downloaded file against its pinned or recorded sha256; return the hash.

    Call it on every use of a downloaded file: a file that changed since it was fetched
    (bit rot, a partial copy, an edit) fails here instead of producing quietly wrong numbers.
    The file is left in place: a check should not destroy evidence.
    """
    path = Path(path)
    manifest = Path(manifest) if manifest is not None else None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; download it first")
    sha, size, origin = _expectation(path.name, manifest, expected_sha256, expected_size)
    if sha is None:
        where = f"has no entry in {manifest}" if manifest is not None else "has no manifest"
        raise ChecksumError(
            f"{path}: cannot verify: the file {where} and no sha256 is pinned; download it with "
            f"interpsharp download (which records its hash) or pin its sha256 in the config"
        )
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(
            f"{path}: size {actual_size} bytes, but {origin} says {size}: the file is truncated or "
            f"was modified. Delete it and download it again."
        )
    actual = sha256_file(path)
    if actual != sha:
        raise ChecksumError(
            f"{path}: sha256 {actual}, but {origin} says {sha}: the file was modified or corrupted "
            f"since it was downloaded. Delete it and download it again; if the new file is "
            f"intended, remove its entry from the manifest or pin the new sha256 in the config."
        )
    return actual


# --------------------------------------------------------------------------- download


class _Transient(Exception):
    """A failure that another attempt may not repeat (dropped connection, 5xx, short read)."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _content_range(header: str | None) -> tuple[int, int | None] | None:
    """``bytes 100-199/1000`` -> (100, 1000); total ``*`` -> None; unparsable -> None."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", header or "")
    if not match:
        return None
    return int(match.group(1)), None if match.group(2) == "*" else int(match.group(2))


def _fetch_once(url: str, part: Path, timeout: float, expected_size: int | None, progress: bool, label: str) -> None:
    """One HTTP request appending to ``part``; raises ``_Transient`` for anything retryable."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"interpsharp/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416:  # our partial file is not a prefix of what the server has: start over
            part.unlink(missing_ok=True)
            raise _Transient(f"HTTP 416 for a resume at byte {offset}; restarting from scratch") from err
        if err.code in _TRANSIENT_STATUS:
            raise _Transient(f"HTTP {err.code} {err.reason}") from err
        raise DownloadError(
            f"{url}: HTTP {err.code} {err.reason}; the URL is wrong or the file was moved. "
            f"Check the URL (it can be overridden in the config) and try again."
        ) from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise _Transient(f"{type(err).__name__}: {err}") from err

    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None and length.isdigit() else None
        if response.status == 206:
            start_total = _content_range(response.headers.get("Content-Range"))
            if start_total is None or start_total[0] != offset:
                part.unlink(missing_ok=True)
                raise _Transient(f"server answered a request from byte {offset} with another range; restarting")
            total = start_total[1] if start_total[1] is not None else (offset + length if length is not None else None)
            mode = "ab" if offset else "wb"
        else:
            # 200: the server ignored (or was not sent) a Range header and sends the whole file.
            offset, total, mode = 0, length, "wb"
        if expected_size is not None and total is not None and total != expected_size:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"{url}: the server announces {total} bytes but {expected_size} are expected; the "
                f"file at this URL changed or the expected size is wrong. Check both, then retry."
            )
        received = offset
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress)
        try:
            with open(part, mode) as fh:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except (http.client.HTTPException, OSError) as err:
            raise _Transient(f"connection lost after {received} bytes: {type(err).__name__}: {err}") from err
        finally:
            bar.close()
    if total is not None and received < total:
        raise _Transient(f"connection closed after {received} of {total} bytes")
    if total is not None and received > total:
        part.unlink(missing_ok=True)
        raise _Transient(f"received {received} bytes, more than the {total} announced; restarting")


def download_file(
    url: str,
    dest: str | os.PathLike,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    manifest: str | os.PathLike | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> DownloadRecord:
    """Download ``url`` to ``dest``, verified, resumable, and recorded in ``manifest``.

    ``dest`` appears only complete and verified. If it already exists it is verified (against
    the pinned ``expected_sha256``, else the manifest) instead of fetched again. Transient
    failures are retried ``retries`` times, waiting ``backoff * 2**k`` seconds before retry k,
    each retry resuming from the bytes already in ``dest.part``. A size or hash mismatch
    deletes the partial file and raises :class:`ChecksumError`.
    """
    dest = Path(dest)
    manifest = Path(manifest) if manifest is not None else None
    if dest.exists():
        sha = (
            verify_file(dest, manifest, expected_sha256, expected_size)
            if expected_sha256 is not None or (manifest is not None and dest.name in read_manifest(manifest))
            else sha256_file(dest)
        )
        record = DownloadRecord(url, dest, sha, dest.stat().st_size, _now(), downloaded=False, requests=0)
        if manifest is not None:
            _record(manifest, record)
        return record

    sha_expected, size_expected, origin = _expectation(dest.name, manifest, expected_sha256, expected_size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    requests = 0
    while True:
        requests += 1
        try:
            _fetch_once(url, part, timeout, size_expected, progress, dest.name)
            break
        except _Transient as err:
            if requests > retries:
                raise DownloadError(
                    f"{url}: giving up after {requests} attempts, last: {err}. The {part.stat().st_size if part.exists() else 0} "
                    f"bytes received so far are kept in {part}; run the download again to resume "
                    f"(delete that file to start over)."
                ) from err
            time.sleep(backoff * 2 ** (requests - 1))

    size = part.stat().st_size
    if size_expected is not None and size != size_expected:
        part.unlink()
        raise ChecksumError(
            f"{url}: downloaded {size} bytes but {origin} says {size_expected}; the file was "
            f"deleted. Run the download again; if it keeps failing, the URL now serves a different file."
        )
    sha = sha256_file(part)
    if sha_expected is not None and sha != sha_expected:
        part.unlink()
        raise ChecksumError(
            f"{url}: sha256 {sha}, but {origin} says {sha_expected}; the file was deleted. "
            f"Run the download again; if it fails the same way, the URL serves a different file than "
            f"the one pinned: check the URL, or pin the new sha256 if you trust it."
        )
    os.replace(part, dest)
    record = DownloadRecord(url, dest, sha, size, _now(), downloaded=True, requests=requests)
    if manifest is not None:
        _record(manifest, record)
    return record


def _record(manifest: Path, record: DownloadRecord) -> None:
    """Write a record into the manifest, keeping the original download time of a known file."""
    previous = read_manifest(manifest).get(record.path.name, {})
    same_file = previous.get("sha256") == record.sha256
    record_in_manifest(
        manifest,
        record.path.name,
        {
            "url": record.url,
            "sha256": record.sha256,
            "size": record.size,
            "downloaded_at": previous["downloaded_at"] if same_file and "downloaded_at" in previous else record.downloaded_at,
            # When the hash was last checked: see recheck_file.
            "mtime_ns": record.path.stat().st_mtime_ns,
        },
    )


def recheck_file(path: str | os.PathLike, manifest: str | os.PathLike, expected_sha256: str | None = None) -> bool:
    """Check a downloaded file again before a run uses it; True if it had to be hashed again.

    A file whose size and modification time are those recorded when its sha256 was last
    checked is taken as unchanged (Snakemake decides what to rerun by the same test), so
    checking every download costs a few ``stat`` calls per run; any other file is hashed in
    full against its pinned or recorded sha256 (:func:`verify_file`, which raises on a
    mismatch) and, if it matches, its new modification time is recorded.
    """
    path, manifest = Path(path), Path(manifest)
    entry = read_manifest(manifest).get(path.name, {})
    stat = path.stat()
    pinned_agrees = expected_sha256 is None or expected_sha256.lower() == entry.get("sha256")
    if pinned_agrees and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return False
    verify_file(path, manifest, expected_sha256)
    if entry:
        record_in_manifest(manifest, path.name, {**entry, "mtime_ns": stat.st_mtime_ns})
    return True


# --------------------------------------------------------------------------- archives


def _archive_stem(archive: Path) -> str:
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if archive.name.endswith(suffix):
            return archive.name[: -len(suffix)]
    raise ArchiveError(f"{archive}: unknown archive format; expected .tar, .tar.gz, .tgz or .zip")


def _safe_member(archive: Path, name: str) -> None:
    """Refuse a member path that is absolute or climbs out of the extraction folder."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"{archive}: member {name!r} would be written outside the target folder; refusing to unpack this archive")


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive, "r:*") as tf:
        for member in tqdm(tf, desc=f"unpack {archive.name}", unit="file", mininterval=2.0):
            _safe_member(archive, member.name)
            if member.issym() or member.islnk():
                target = PurePosixPath(member.name).parent / member.linkname if member.issym() else PurePosixPath(member.linkname)
                _safe_member(archive, str(target))
            elif not (member.isfile() or member.isdir()):
                raise ArchiveError(f"{archive}: member {member.name!r} is a device or fifo; refusing to unpack this archive")
            # The 'data' filter (Python >= 3.11.4) re-checks all of the above inside tarfile.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extract(member, into, **extra)


def _extract_zip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for name in tqdm(zf.namelist(), desc=f"unpack {archive.name}", unit="file", mininterval=2.0):
            _safe_member(archive, name)
            zf.extract(name, into)


def unpack_archive(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Unpack a .tar/.tar.gz/.tgz/.zip into ``dest_dir`` and return the unpacked root folder.

    An archive with a single top-level folder (``imagenet-a/``...) yields that folder;
    otherwise the contents go into a folder named after the archive. Unpacking happens in a
    temporary sibling that is renamed into place, so an interrupted unpack never leaves a
    tree that looks complete; an existing root of the same name is replaced.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    stem = _archive_stem(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: no such archive; download it first")
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".unpack-{archive.name}.", dir=dest_dir))
    try:
        if archive.name.endswith(".zip"):
            _extract_zip(archive, tmp)
        else:
            try:
                _extract_tar(archive, tmp)
            except (tarfile.TarError, EOFError, OSError) as err:
                raise ArchiveError(f"{archive}: cannot unpack ({err}); the file is probably truncated: delete it and download it again") from err
        entries = list(tmp.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            source, root = entries[0], dest_dir / entries[0].name
        else:
            tmp.chmod(0o755)  # mkdtemp made it private, and it becomes the root folder itself
            source, root = tmp, dest_dir / stem
        if root.exists():
            shutil.rmtree(root)
        os.replace(source, root)
        return root
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- user-supplied data


@dataclass(frozen=True)
class LocalDataset:
    """A dataset whose licence requires each user to obtain it from its publisher (its folder
    is described and checked by its layout in ``interpsharp.datasets``)."""

    title: str
    where: str


LOCAL_DATASETS: dict[str, LocalDataset] = {
    "imagenet": LocalDataset(
        "ImageNet (ILSVRC-2012) validation set",
        "https://image-net.org/download.php (free account; ILSVRC2012_img_val.tar, 6.3 GB), then "
        "sort the 50,000 images into class folders, e.g. with the valprep.sh script of the PyTorch "
        "ImageNet example",
    ),
    "imagenet-sketch": LocalDataset(
        "ImageNet-Sketch",
        "https://github.com/HaohanWang/ImageNet-Sketch (links to the ImageNet-Sketch.zip download) "
        "or the Hugging Face dataset https://huggingface.co/datasets/songweig/imagenet_sketch; "
        "the class folders are under sketch/ in the unpacked zip",
    ),
    "objectnet": LocalDataset(
        "ObjectNet",
        "https://objectnet.dev/download.html (accept the licence; objectnet-1.0.zip, password on the page), "
        "then point the config at the unpacked objectnet-1.0/images folder",
    ),
}


def require_local_dataset(path: str | os.PathLike, name: str, layout: str) -> Path:
    """Check that a user-supplied dataset is at ``path`` in ``layout``; return the path.

    These sets cannot be downloaded for the user, so the best we can do is fail before any
    GPU time is spent, saying where to get the data and how the folder must look. Layouts
    known to :mod:`interpsharp.datasets` are checked completely (class folders, names, no
    empty class); for others the folder must exist and not be empty.
    """
    # Imported here: it pulls in open_clip and PIL, which plain downloads do not need.
    from interpsharp.datasets import LAYOUTS as CACHE_LAYOUTS
    from interpsharp.datasets import DatasetLayoutError, plan_dataset

    path = Path(path)
    source = LOCAL_DATASETS.get(name)
    if source is not None:
        obtain = f"{source.title} cannot be downloaded automatically; get it from {source.where}."
    else:
        obtain = f"Provide the {name} dataset there."
    if layout in CACHE_LAYOUTS:
        expected = f"Expected layout '{layout}': {CACHE_LAYOUTS[layout].folder_description()} holding the images."
    else:
        raise KeyError(f"unknown dataset layout {layout!r} for {name!r}; known: {', '.join(sorted(CACHE_LAYOUTS))}")

    if not path.is_dir() or not any(path.iterdir()):
        state = "is empty" if path.is_dir() else "does not exist"
        raise DatasetMissingError(f"dataset {name!r}: {path} {state}. {obtain} {expected} Then point the config at that folder.")
    if layout in CACHE_LAYOUTS:
        try:
            plan_dataset(layout, path)
        except DatasetLayoutError as err:
            raise DatasetMissingError(f"dataset {name!r} at {path} is not in the expected layout: {err}. {expected} {obtain}") from err
    return path
