"""Provenance: which code, config, environment and inputs a results folder was made with, and
whether the present checkout and environment still match.

Three pieces, each a plain JSON document:

- the **state** of a process: the git commit and whether the tree was dirty (with a hash of the
  changes), a hash of the effective config, and the Python packages and platform, folded into
  one **stamp** (sha256). Two tables with the same stamp were made by the same code, config and
  package versions;
- a **table sidecar** ``<table>.provenance.json`` beside every result TSV, written by
  :func:`interpsharp.tables.write_tsv` from what the workflow sets with
  :func:`interpsharp.tables.set_provenance` (:func:`table_provenance`): the stamp and state the
  table was made under, and the job (rule, wildcards, host, devices). A table made under another
  config or code version carries another stamp;
- the **run record** ``results/<world>/provenance.json`` (:func:`build_record`): the state at
  the end of a run, the seeds, the Snakemake command line, the sha256 of every checkpoint, the
  content hash of every evaluation cache, the versions of torch and CUDA and the device names,
  and every table's stamp.

:func:`check` compares a run record with the present checkout, config files and environment and
lists what differs. Nothing here imports snakemake or torch (torch only when asked for device
names): workflow jobs call it for every table they write.
"""

from __future__ import annotations

import copy
import hashlib
import html
import importlib.metadata
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from interpsharp import __version__, tables

RECORD_FORMAT = "interpsharp-provenance/1"
#: Sidecar of ``x.tsv``: ``x.tsv.provenance.json`` (never matches ``*.tsv`` globs).
SIDECAR_SUFFIX = tables.SIDECAR_SUFFIX
_CHUNK = 1 << 20


# -- hashing ---------------------------------------------------------------------------------
def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spacing, so equal configs hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sha256_json(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(path: str | os.PathLike) -> str:
    """Content hash of a file or a folder (e.g. an evaluation cache): the sha256 of every file's
    relative path and sha256, in sorted order. Independent of mtimes and of where it lies."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder to hash")
    lines = [f"{f.relative_to(path).as_posix()}\t{sha256_file(f)}" for f in sorted(p for p in path.rglob("*") if p.is_file())]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# -- the state of a process ------------------------------------------------------------------
def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=60)


def code_state(root: str | os.PathLike) -> dict[str, Any]:
    """The checkout at ``root``: commit, whether tracked or untracked (not ignored) files differ
    from it, which, and a hash of those changes (so two dirty trees can be told apart). Outside
    a git checkout: commit and dirty are None."""
    root = Path(root)
    head = _git(root, "rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": None, "dirty": None, "changed_files": [], "changes_sha256": None, "interpsharp": __version__}
    status = _git(root, "status", "--porcelain", "--untracked-files=all").stdout.decode()
    changed = sorted(line[3:] for line in status.splitlines() if line.strip())
    digest = hashlib.sha256(_git(root, "diff", "HEAD", "--binary").stdout)
    for name in _git(root, "ls-files", "--others", "--exclude-standard", "-z").stdout.decode().split("\0"):
        if name and (root / name).is_file():
            digest.update(f"\0{name}\0{sha256_file(root / name)}".encode())
    return {
        "commit": head.stdout.decode().strip(),
        "dirty": bool(changed),
        "changed_files": changed,
        "changes_sha256": digest.hexdigest() if changed else None,
        "interpsharp": __version__,
    }


def environment_state() -> dict[str, Any]:
    """Python, platform and the version of every installed distribution."""
    packages = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name.lower().replace("_", "-")] = dist.version
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": platform.system(),
        "machine": platform.machine(),
        "packages": dict(sorted(packages.items())),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_state(import_torch: bool = False) -> dict[str, Any]:
    """Host, CPU, and torch's view: its version, CUDA and cuDNN versions, the visible GPUs.
    Torch is read only if already imported (or ``import_torch``): a table job that never
    needed torch does not pay for importing it."""
    state: dict[str, Any] = {"host": socket.gethostname(), "cpu": _cpu_name()}
    if import_torch or "torch" in sys.modules:
        import torch

        available = torch.cuda.is_available()
        state.update(
            torch=torch.__version__,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version() if available else None,
            cuda_available=available,
            devices=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else [],
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
    return state


def stamp_of(code: Mapping[str, Any], config_sha256: str, environment_sha256: str) -> str:
    """The stamp: equal exactly when commit, uncommitted changes, config and packages are."""
    essentials = {key: code.get(key) for key in ("commit", "dirty", "changes_sha256")}
    return sha256_json({"code": essentials, "config": config_sha256, "environment": environment_sha256})


def current_state(root: str | os.PathLike, config: Mapping[str, Any]) -> dict[str, Any]:
    """This process's state for ``config`` (the effective, validated config) and the checkout at
    ``root``, with its stamp."""
    code = code_state(root)
    environment = environment_state()
    config = json.loads(canonical_json(config))  # plain JSON types, as it will be read back
    config_sha256, environment_sha256 = sha256_json(config), sha256_json(environment)
    return {
        "stamp": stamp_of(code, config_sha256, environment_sha256),
        "code": code,
        "config_sha256": config_sha256,
        "config": config,
        "environment_sha256": environment_sha256,
        "environment": environment,
    }


def table_provenance(state: Mapping[str, Any], rule: str, wildcards: Mapping[str, Any]) -> dict[str, Any]:
    """What a workflow job's tables carry in their sidecars: its state and the job."""
    return {"format": RECORD_FORMAT, **state, "job": {"rule": rule, "wildcards": dict(wildcards), **hardware_state()}}


def seeds_of(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every config value whose key is a seed (``seed``, ``mask_seeds``, ``x_seed``), by dotted key."""
    seeds: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            seeds.update(seeds_of(value, f"{dotted}."))
        elif re.search(r"(^|_)seeds?$", str(key)):
            seeds[dotted] = value
    return seeds


# -- sidecars and the run record -----------------------------------------------------------
def sidecar_path(table: str | os.PathLike) -> Path:
    table = Path(table)
    return table.with_name(table.name + SIDECAR_SUFFIX)


def read_sidecar(table: str | os.PathLike) -> dict[str, Any] | None:
    path = sidecar_path(table)
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(value: Any, path: str | os.PathLike) -> Path:
    """Atomically, like every table (temporary sibling, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tables._write_atomically(path, lambda fh: fh.write(json.dumps(value, indent=1, sort_keys=True, default=str) + "\n"))
    return path


def result_tables(results: str | os.PathLike) -> list[Path]:
    """Every result TSV under a results folder, except Snakemake's per-job timing benchmarks."""
    results = Path(results)
    return sorted(p for p in results.rglob("*.tsv") if p.relative_to(results).parts[0] != "benchmarks")


def build_record(
    root: str | os.PathLike,
    config: Mapping[str, Any],
    *,
    results: str | os.PathLike,
    config_files: Sequence[str | os.PathLike],
    schema: str | os.PathLike,
    command: str | None,
    checkpoints: Iterable[str | os.PathLike],
    caches: Iterable[str | os.PathLike],
) -> dict[str, Any]:
    """The run record of ``results`` (paths in it relative to the working directory, which holds
    ``results/`` and ``resources/``)."""
    results = Path(results)
    state = current_state(root, config)
    tables = {}
    for table in result_tables(results):
        sidecar = read_sidecar(table)
        tables[table.relative_to(results).as_posix()] = {
            "stamp": sidecar["stamp"] if sidecar else None,
            "current": bool(sidecar) and sidecar["stamp"] == state["stamp"],
            "rule": sidecar["job"]["rule"] if sidecar else None,
            "host": sidecar["job"].get("host") if sidecar else None,
            "devices": sidecar["job"].get("devices") if sidecar else None,
        }
    return {
        "format": RECORD_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **state,
        "repository": str(Path(root).resolve()),
        "config_files": list(dict.fromkeys(str(Path(f).resolve()) for f in config_files)),  # in merge order, once
        "config_schema": str(Path(schema).resolve()),
        "seeds": seeds_of(state["config"]),
        "snakemake_command": command,
        "hardware": hardware_state(import_torch=True),
        "checkpoints": {str(p): sha256_file(p) for p in checkpoints},
        "caches": {str(p): tree_sha256(p) for p in caches},
        "tables": tables,
    }


# -- the present config, as Snakemake would build it -----------------------------------------
def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Snakemake's config merge: later files update earlier ones, dict by dict."""
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def fill_defaults(config: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Fill missing keys from the schema's defaults, recursively (what Snakemake's
    ``validate(..., set_default=True)`` does for the workflow)."""
    for key, spec in schema.get("properties", {}).items():
        if key not in config and "default" in spec:
            config[key] = copy.deepcopy(spec["default"])
        if isinstance(config.get(key), dict) and "properties" in spec:
            fill_defaults(config[key], spec)
    return config


def config_merge_order(loaded: Sequence[str | os.PathLike], command_line: Sequence[str | os.PathLike]) -> list[str]:
    """The config files of a Snakemake run in the order their values were merged (later wins).

    Snakemake lists them in the order it *read* them (``workflow.configfiles``): the
    ``--configfile`` files of the command line or a profile first, then the Snakefile's own
    ``configfile:``. But the command line's values are laid over the Snakefile's afterwards, so
    they win: the Snakefile's files come first here, the command line's last, each once.
    """
    cli = [str(Path(f).resolve()) for f in command_line]
    own = [str(Path(f).resolve()) for f in loaded if str(Path(f).resolve()) not in cli]
    return list(dict.fromkeys(own + cli))


def effective_config(config_files: Sequence[str | os.PathLike], schema: str | os.PathLike) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for path in config_files:
        _merge(config, yaml.safe_load(Path(path).read_text()) or {})
    return json.loads(canonical_json(fill_defaults(config, yaml.safe_load(Path(schema).read_text()))))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def differing_keys(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, value then, value now) for every leaf that differs; a missing side is None."""
    a, b = _flatten(then), _flatten(now)
    return [(key, a.get(key), b.get(key)) for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)]


# -- the check --------------------------------------------------------------------------------
@dataclass
class Finding:
    """One thing that differs between a results folder and the present: ``area`` is code,
    config, environment, checkpoint, cache or table."""

    area: str
    message: str


def _code_findings(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[Finding]:
    def describe(code: Mapping[str, Any]) -> str:
        if code.get("commit") is None:
            return "no git checkout"
        return f"{code['commit'][:12]}" + (f" + uncommitted changes in {len(code['changed_files'])} file(s)" if code["dirty"] else " (clean)")

    essentials = ("commit", "dirty", "changes_sha256")
    if all(then.get(k) == now.get(k) for k in essentials):
        return []
    return [Finding("code", f"made at {describe(then)}; the checkout is now at {describe(now)}")]


def _environment_findings(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[Finding]:
    findings = []
    for key in ("python", "implementation", "system", "machine"):
        if then.get(key) != now.get(key):
            findings.append(Finding("environment", f"{key}: {then.get(key)} then, {now.get(key)} now"))
    a, b = then.get("packages", {}), now.get("packages", {})
    for name in sorted(a.keys() | b.keys()):
        if a.get(name) != b.get(name):
            findings.append(Finding("environment", f"package {name}: {a.get(name, 'absent')} then, {b.get(name, 'absent')} now"))
    return findings


def check(results: str | os.PathLike, repository: str | os.PathLike | None = None, data: bool = True) -> tuple[dict[str, Any], list[Finding]]:
    """Compare ``results`` (a folder with a provenance.json) with the present: the checkout at
    ``repository`` (default: the one recorded), the recorded config files as they are now, this
    Python environment, and (with ``data``) the checkpoints and caches on disk and every table's
    sidecar. Returns the record and what differs (empty: everything matches)."""
    results = Path(results)
    path = results / "provenance.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no provenance record; the workflow writes it at the end of a run (rule record_provenance)")
    record = json.loads(path.read_text())
    if record.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path}: format {record.get('format')!r}, expected {RECORD_FORMAT!r}")
    workdir = results.parent.parent  # results/<world> lies in the working directory
    findings = _code_findings(record["code"], code_state(repository or record["repository"]))

    missing = [f for f in record["config_files"] if not Path(f).is_file()]
    if missing:
        findings.append(Finding("config", f"config file(s) no longer there: {', '.join(missing)}"))
    else:
        now = effective_config(record["config_files"], record["config_schema"])
        for key, then_value, now_value in differing_keys(record["config"], now):
            findings.append(Finding("config", f"{key}: {json.dumps(then_value)} then, {json.dumps(now_value)} now"))

    findings += _environment_findings(record["environment"], environment_state())

    if data:
        for kind, hashes, hasher in (("checkpoint", record["checkpoints"], sha256_file), ("cache", record["caches"], tree_sha256)):
            for name, recorded in hashes.items():
                target = workdir / name
                if not target.exists():
                    findings.append(Finding(kind, f"{name}: no longer there"))
                elif hasher(target) != recorded:
                    findings.append(Finding(kind, f"{name}: content changed since the run (sha256 {recorded[:12]} then)"))
        findings += _table_findings(record, results)
    return record, findings


def _table_findings(record: Mapping[str, Any], results: Path) -> list[Finding]:
    """Tables made under another stamp than the run's (at the time of the run or since), each
    with what made its stamp differ; tables written since the record; tables gone."""
    findings = []
    present = {p.relative_to(results).as_posix(): p for p in result_tables(results)}
    for name in sorted(record["tables"].keys() - present.keys()):
        findings.append(Finding("table", f"{name}: listed in the record, no longer there"))
    for name, table in sorted(present.items()):
        sidecar = read_sidecar(table)
        if sidecar is None:
            findings.append(Finding("table", f"{name}: no provenance sidecar (written outside the workflow?)"))
            continue
        if sidecar["stamp"] == record["stamp"]:
            continue
        reasons = [f.message for f in _code_findings(sidecar["code"], record["code"])]
        reasons += [f"config {key}" for key, *_ in differing_keys(sidecar["config"], record["config"])]
        reasons += [f.message for f in _environment_findings(sidecar["environment"], record["environment"])]
        findings.append(Finding("table", f"{name}: made under stamp {sidecar['stamp'][:12]}, not the run's "
                                         f"{record['stamp'][:12]} ({'; '.join(reasons) or 'same inputs, other stamp'})"))
    return findings


def format_findings(results: str | os.PathLike, record: Mapping[str, Any], findings: Sequence[Finding]) -> str:
    lines = [f"{results}: run of {record['created']}, stamp {record['stamp'][:12]}, code {record['code']['commit'] or '-'}"
             f"{' (dirty)' if record['code'].get('dirty') else ''}, config {record['config_sha256'][:12]}"]
    if not findings:
        lines.append("everything matches the present checkout, config files and environment")
        return "\n".join(lines)
    lines.append(f"{len(findings)} difference(s) from the present:")
    lines += [f"  {f.area}: {f.message}" for f in findings]
    return "\n".join(lines)


# -- the report section ----------------------------------------------------------------------
def render_html(record: Mapping[str, Any]) -> str:
    """A self-contained page summarising the run record, for report.html."""
    e = html.escape
    code = record["code"]
    hardware = record["hardware"]
    tables = record["tables"]
    other = {name: t for name, t in tables.items() if not t["current"]}
    rows = [
        ("stamp", record["stamp"]),
        ("git commit", f"{code['commit'] or 'not a git checkout'}" + (f" with uncommitted changes: {', '.join(code['changed_files'])}" if code.get("dirty") else " (clean)")),
        ("config sha256", f"{record['config_sha256']} (files: {', '.join(record['config_files'])})"),
        ("seeds", ", ".join(f"{k} = {v}" for k, v in record["seeds"].items())),
        ("Snakemake command", record["snakemake_command"] or "unknown"),
        ("Python", f"{record['environment']['python']} ({record['environment']['implementation']}, {record['environment']['system']} {record['environment']['machine']})"),
        ("torch / CUDA / cuDNN", f"{hardware.get('torch')} / {hardware.get('cuda')} / {hardware.get('cudnn')}"),
        ("devices (this job)", ", ".join(hardware.get("devices") or []) or f"CPU: {hardware['cpu']}"),
        ("devices (table jobs)", ", ".join(sorted({d for t in tables.values() for d in (t.get("devices") or [])})) or "CPU only"),
        ("packages", f"{len(record['environment']['packages'])} (sha256 {record['environment_sha256'][:12]}; every version in provenance.json)"),
        ("tables", f"{len(tables) - len(other)} of {len(tables)} made under this stamp" + (f"; others: {', '.join(sorted(other))}" if other else "")),
    ]
    body = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    files = "".join(f"<tr><td>{e(kind)}</td><td>{e(name)}</td><td><code>{e(digest)}</code></td></tr>"
                    for kind, items in (("checkpoint", record["checkpoints"]), ("cache", record["caches"])) for name, digest in items.items())
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>provenance</title><style>"
        "body{font-family:sans-serif;font-size:14px} th{text-align:left;vertical-align:top;padding-right:1em} "
        "td{word-break:break-all} table{border-collapse:collapse;margin-bottom:1em}</style></head><body>"
        f"<h2>Provenance of this run ({e(record['created'])})</h2><table>{body}</table>"
        f"<h3>Inputs (sha256; caches: content hash of every file)</h3><table>{files}</table>"
        "<p>Check a results folder against the present checkout and environment: "
        "<code>interpsharp provenance --check results/&lt;world&gt;</code></p></body></html>\n"
    )
