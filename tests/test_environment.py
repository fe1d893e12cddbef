"""The locked environment: requirements.lock satisfies pyproject.toml, pins every package with
its hashes, envs/interpsharp.yaml pins the same versions, and (under `make test`, which sets
INTERPSHARP_LOCK) the running venv holds exactly the lock's versions."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock_pins = _load_script("conda-env-from-lock").lock_pins


def pins_of(lines: list[str]) -> dict[str, tuple[str, str | None]]:
    """``name==version[ ; marker]`` lines as {canonical name: (version, marker)}; a name pinned
    twice (versions forked by platform or Python) fails here, as the lock is meant to avoid it."""
    pins: dict[str, tuple[str, str | None]] = {}
    for line in lines:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"not an exact pin: {line}"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{name} is pinned twice (a forked resolution): {pins[name]} and {line}"
        pins[name] = (spec.version, str(requirement.marker) if requirement.marker else None)
    return pins


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_lock_satisfies_every_range_of_pyproject():
    pins = pins_of(lock_pins(LOCK.read_text()))
    for requirement in project_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in {LOCK.name}: run `make lock`"
        version, marker = pins[name]
        assert marker is None, f"{name} is locked for some platforms only ({marker})"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{LOCK.name} pins {name}=={version}, outside pyproject's {requirement}: run `make lock`"
        )


def test_every_locked_package_carries_its_hashes():
    """`pip install --require-hashes` refuses a lock with a bare pin; say which one here."""
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    requirement_blocks = [b for b in blocks if "==" in b.split("\n", 1)[0] and not b.startswith("#")]
    assert len(requirement_blocks) == len(lock_pins(LOCK.read_text()))
    bare = [b.split()[0] for b in requirement_blocks if not re.search(r"--hash=sha256:[0-9a-f]{64}", b)]
    assert not bare, f"pins without a sha256: {bare}"


def test_conda_env_pins_the_lock():
    env = yaml.safe_load((ROOT / "envs" / "interpsharp.yaml").read_text())
    pip_lines = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    in_env = pins_of([line for line in pip_lines if not line.startswith("-e")])
    in_lock = pins_of(lock_pins(LOCK.read_text()))
    differing = {name: (in_env.get(name), in_lock.get(name)) for name in in_env.keys() | in_lock.keys()
                 if in_env.get(name) != in_lock.get(name)}
    assert not differing, f"envs/interpsharp.yaml differs from {LOCK.name} (env, lock): {differing}; run `make lock`"
    assert "-e .." in pip_lines, "the conda environment no longer installs the project itself"


def test_conda_env_python_is_one_the_lock_covers():
    env = yaml.safe_load((ROOT / "envs" / "interpsharp.yaml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minimum = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Requirement(f"python{minimum}").specifier.contains(python.split("=", 1)[1] + ".0")


@pytest.mark.skipif(not os.environ.get("INTERPSHARP_LOCK"), reason="only in a venv `make venv` built from the lock")
def test_running_environment_is_exactly_the_lock():
    """What `make test` runs in is what the lock says: every package the lock has for this
    platform at its version, and nothing else but the project and pip's own tools."""
    pins = pins_of(lock_pins((ROOT / os.environ["INTERPSHARP_LOCK"]).read_text()))
    wanted = {name: version for name, (version, marker) in pins.items() if marker is None or Marker(marker).evaluate()}
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    ignored = {"interpsharp", "pip", "setuptools", "wheel"} - set(wanted)
    wrong = {name: (installed.get(name), version) for name, version in wanted.items() if installed.get(name) != version}
    extra = sorted(set(installed) - set(wanted) - ignored)
    assert not wrong, f"installed vs locked versions differ (installed, lock): {wrong} [{sys.prefix}]"
    assert not extra, f"installed but not in the lock: {extra} [{sys.prefix}]"
