"""Provenance: content hashes, the git state, stamps, table sidecars, the config Snakemake would
build (against Snakemake's own validation), and the check of a results folder against the
present. The workflow's record of a real run is tested in tests/test_workflow_e2e.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from interpsharp import provenance, tables
from interpsharp.provenance import (
    build_record,
    check,
    code_state,
    current_state,
    effective_config,
    seeds_of,
    sidecar_path,
    table_provenance,
    tree_sha256,
)
from interpsharp.tables import read_tsv, set_provenance, write_tsv

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow_schemas" / "config.schema.yaml"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git checkout with one commit: a tracked file and an ignored folder."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.org")
    git(repo, "config", "user.name", "t")
    (repo / "code.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("results/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    return repo


@pytest.fixture
def no_sidecars():
    yield
    set_provenance(None)


def test_tree_hash_is_content_only(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "sub").mkdir(parents=True)
    (a / "images.npy").write_bytes(bytes(range(256)) * 100)
    (a / "sub" / "meta.json").write_text("{}")
    shutil.copytree(a, b)
    os.utime(b / "images.npy", (0, 0))
    assert tree_sha256(a) == tree_sha256(b)  # same content elsewhere, other mtimes
    data = bytearray((b / "images.npy").read_bytes())
    data[1000] ^= 1
    (b / "images.npy").write_bytes(bytes(data))
    assert tree_sha256(a) != tree_sha256(b)  # one bit
    shutil.rmtree(b)
    shutil.copytree(a, b)
    (b / "sub" / "meta.json").rename(b / "meta.json")
    assert tree_sha256(a) != tree_sha256(b)  # same bytes, another layout


def test_code_state_follows_commits_and_uncommitted_changes(repo: Path):
    clean = code_state(repo)
    assert clean["commit"] == git(repo, "rev-parse", "HEAD") and clean["dirty"] is False and clean["changed_files"] == []
    (repo / "results").mkdir()
    (repo / "results" / "table.tsv").write_text("a\n1\n")
    assert code_state(repo) == clean, "ignored files are not changes to the code"
    (repo / "code.py").write_text("x = 2\n")
    first = code_state(repo)
    (repo / "code.py").write_text("x = 3\n")
    second = code_state(repo)
    assert first["dirty"] and first["changed_files"] == ["code.py"]
    assert first["changes_sha256"] != second["changes_sha256"], "two different edits must be told apart"
    (repo / "code.py").write_text("x = 1\n")
    (repo / "new.py").write_text("y = 1\n")
    assert code_state(repo)["changed_files"] == ["new.py"]
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second")
    assert code_state(repo)["dirty"] is False and code_state(repo)["commit"] != clean["commit"]


def test_outside_a_checkout_the_commit_is_unknown(tmp_path: Path):
    assert code_state(tmp_path)["commit"] is None


def test_stamp_changes_with_config_values_not_their_order(repo: Path):
    config = {"a": {"x": 1, "y": [1, 2]}, "b": "s"}
    reordered = {"b": "s", "a": {"y": [1, 2], "x": 1}}
    assert current_state(repo, config)["stamp"] == current_state(repo, reordered)["stamp"]
    assert current_state(repo, config)["stamp"] != current_state(repo, {**config, "b": "t"})["stamp"]


def test_stamp_changes_with_the_code(repo: Path):
    before = current_state(repo, {"a": 1})["stamp"]
    (repo / "code.py").write_text("x = 2\n")
    assert current_state(repo, {"a": 1})["stamp"] != before


def test_tables_get_a_sidecar_only_when_asked_and_stay_plain_tables(tmp_path: Path, repo: Path, no_sidecars):
    frame = pd.DataFrame({"model": ["m"], "value": [0.5]})
    write_tsv(frame, tmp_path / "plain.tsv")
    assert not sidecar_path(tmp_path / "plain.tsv").exists()
    state = current_state(repo, {"world": "demo"})
    set_provenance(table_provenance(state, "rule_x", {"model": "m"}))
    write_tsv(frame, tmp_path / "stamped.tsv")
    sidecar = json.loads(sidecar_path(tmp_path / "stamped.tsv").read_text())
    assert sidecar["stamp"] == state["stamp"] and sidecar["job"]["rule"] == "rule_x"
    assert read_tsv(tmp_path / "stamped.tsv").equals(frame)
    assert pd.read_csv(tmp_path / "stamped.tsv", sep="\t").equals(frame)
    assert (tmp_path / "stamped.tsv").read_text() == (tmp_path / "plain.tsv").read_text()
    umask = os.umask(0o022)
    try:
        write_tsv(frame, tmp_path / "shared.tsv")
    finally:
        os.umask(umask)
    for path in (tmp_path / "shared.tsv", sidecar_path(tmp_path / "shared.tsv")):
        assert path.stat().st_mode & 0o777 == 0o644, f"{path.name} unreadable to others on a shared file system"


def test_effective_config_is_what_snakemake_validates(tmp_path: Path):
    """An independent implementation: Snakemake's own merge and schema defaults."""
    from snakemake.utils import validate

    files = [ROOT / "config.yaml", ROOT / "config" / "ci.yaml"]
    merged: dict = {}
    for path in files:
        provenance._merge(merged, yaml.safe_load(path.read_text()))
    validate(merged, schema=str(SCHEMA), set_default=True)
    assert effective_config(files, SCHEMA) == json.loads(provenance.canonical_json(merged))
    partial = tmp_path / "partial.yaml"
    partial.write_text("world: demo\n")
    minimal: dict = {"world": "demo"}
    validate(minimal, schema=str(SCHEMA), set_default=True)
    assert effective_config([partial], SCHEMA) == json.loads(provenance.canonical_json(minimal))


def test_seeds_are_found_at_any_depth():
    config = {"pruning": {"mask_seeds": [0, 1]}, "demo": {"seed": 3, "finetune": {"lr": 1}}, "seedless": 1}
    assert seeds_of(config) == {"pruning.mask_seeds": [0, 1], "demo.seed": 3}


@pytest.fixture
def run(repo: Path, no_sidecars) -> dict:
    """A results folder as the workflow leaves it, in a working directory inside ``repo``'s
    ignored results/ (a config file, a checkpoint, a cache, two stamped tables, the record)."""
    workdir = repo / "results" / "work"
    config_file = workdir / "config.yaml"
    config_file.parent.mkdir(parents=True)
    config_file.write_text("world: demo\noutcome: {delta: 0.05}\n")
    config = effective_config([config_file], SCHEMA)
    checkpoint = workdir / "resources" / "demo" / "checkpoints" / "model_0.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    cache = workdir / "resources" / "demo" / "caches" / "photo"
    cache.mkdir(parents=True)
    (cache / "images.npy").write_bytes(b"pixels")
    results = workdir / "results" / "demo"
    state = current_state(repo, config)
    set_provenance(table_provenance(state, "evaluate", {"model": "model_0"}))
    for name in ("tables/evaluation.tsv", "evaluation/model_0/alpha_0.000.tsv"):
        write_tsv(pd.DataFrame({"value": [1.0]}), results / name)
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        record = build_record(repo, config, results="results/demo", config_files=[config_file], schema=SCHEMA,
                              command="snakemake --configfile config.yaml", checkpoints=[checkpoint.relative_to(workdir)],
                              caches=[cache.relative_to(workdir)])
    finally:
        os.chdir(cwd)
    provenance.write_json(record, results / "provenance.json")
    return {"repo": repo, "results": results, "config_file": config_file, "checkpoint": checkpoint, "cache": cache,
            "record": record}


def test_record_holds_what_the_issue_lists(run):
    record = run["record"]
    assert record["code"]["commit"] == git(run["repo"], "rev-parse", "HEAD")
    assert record["config_sha256"] == provenance.sha256_json(record["config"])
    assert record["environment"]["packages"]["pandas"] == pd.__version__
    assert record["hardware"]["torch"] and "cuda" in record["hardware"] and "cpu" in record["hardware"]
    assert record["checkpoints"] == {"resources/demo/checkpoints/model_0.pt": provenance.sha256_file(run["checkpoint"])}
    assert record["caches"] == {"resources/demo/caches/photo": tree_sha256(run["cache"])}
    assert record["seeds"]["pruning.mask_seeds"] == record["config"]["pruning"]["mask_seeds"]
    assert record["snakemake_command"] == "snakemake --configfile config.yaml"
    assert set(record["tables"]) == {"tables/evaluation.tsv", "evaluation/model_0/alpha_0.000.tsv"}
    assert all(table["current"] for table in record["tables"].values())
    assert "model_0.pt" in provenance.render_html(record)


def test_check_finds_nothing_when_nothing_changed(run):
    _, findings = check(run["results"])
    assert findings == []


def test_check_names_a_changed_config_value(run):
    run["config_file"].write_text("world: demo\noutcome: {delta: 0.1}\n")
    _, findings = check(run["results"])
    assert [(f.area, f.message) for f in findings] == [("config", "outcome.delta: 0.05 then, 0.1 now")]


def test_check_finds_changed_code_inputs_and_tables(run):
    (run["repo"] / "code.py").write_text("x = 2\n")
    run["checkpoint"].write_bytes(b"other weights")
    (run["cache"] / "images.npy").unlink()
    set_provenance(table_provenance(current_state(run["repo"], {"world": "demo"}), "evaluate", {}))
    write_tsv(pd.DataFrame({"value": [2.0]}), run["results"] / "tables" / "evaluation.tsv")
    _, findings = check(run["results"])
    by_area = {}
    for finding in findings:
        by_area.setdefault(finding.area, []).append(finding.message)
    assert "uncommitted changes in 1 file(s)" in by_area["code"][0]
    assert by_area["checkpoint"] == ["resources/demo/checkpoints/model_0.pt: content changed since the run (sha256 "
                                     f"{run['record']['checkpoints']['resources/demo/checkpoints/model_0.pt'][:12]} then)"]
    assert len(by_area["cache"]) == 1 and "photo: content changed" in by_area["cache"][0]
    (table,) = by_area["table"]
    assert table.startswith("tables/evaluation.tsv: made under stamp") and "config outcome.delta" in table
    assert "uncommitted changes" in table
    _, quick = check(run["results"], data=False)
    assert {f.area for f in quick} == {"code"}


def test_check_of_a_folder_without_record_says_what_makes_one(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="record_provenance"):
        check(tmp_path)


def test_cli_check_exit_status(run, capsys):
    from interpsharp.cli import main

    assert main(["provenance", "--check", str(run["results"])]) == 0
    assert "everything matches" in capsys.readouterr().out
    run["config_file"].write_text("world: demo\noutcome: {delta: 0.1}\n")
    assert main(["provenance", "--check", str(run["results"])]) == 1
    assert "config: outcome.delta: 0.05 then, 0.1 now" in capsys.readouterr().out
    tables.set_provenance(None)


def test_config_files_are_recorded_in_the_order_snakemake_merged_them(tmp_path):
    """`snakemake --profile profiles/demo` reads config/demo.yaml (the profile's --configfile)
    before the Snakefile's config.yaml, but lays demo.yaml's values over it: the record must list
    config.yaml first, or `provenance --check` would compare a demo run with the paper world."""
    from interpsharp.provenance import config_merge_order, effective_config

    own, cli = tmp_path / "config.yaml", tmp_path / "demo.yaml"
    own.write_text("world: paper\noutcome: {xi: 0.02}\n")
    cli.write_text("world: demo\n")
    order = config_merge_order([cli, own], [cli])
    assert order == [str(own.resolve()), str(cli.resolve())]
    schema = tmp_path / "schema.yaml"
    schema.write_text("type: object\nproperties: {}\n")
    merged = effective_config(order, schema)
    assert merged["world"] == "demo" and merged["outcome"] == {"xi": 0.02}
    # A Snakefile file given again on the command line counts once, at the command line's place.
    assert config_merge_order([own, cli], [own]) == [str(cli.resolve()), str(own.resolve())]
