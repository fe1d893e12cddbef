"""Wheels for a GPU machine without internet: what interpsharp needs that the machine's Python lacks.

A lent GPU machine often has torch, CUDA and the scientific stack, no network, and receives only
a copy of the working tree, so ``make venv`` cannot run there. Instead, on a machine with the
package index (README, "Checking a GPU"):

    python3 scripts/gpu_wheels.py --have have.txt --python-version 3.12 -d .whl

downloads, for that machine's Python (CPython, Linux x86-64), the wheel of every package of the
lock (``requirements.lock``, or ``--requirements`` any ``name==version`` list such as
``pip freeze`` of a working venv) whose name ``have.txt`` does not list (one name per line;
``python3 -m pip list --format=freeze`` there writes one), at the lock's version and without
dependencies: the lock already holds the whole closure. Packages published only as source are
built into wheels here (pure Python). Then, there:

    python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
    make bench-gpu
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

#: Linux x86-64 wheel tags pip may pick, newest glibc first (pip matches each tag exactly).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def pinned(lines: list[str], python_version: str) -> dict[str, str]:
    """``{name: version}`` of every ``name==version`` line whose environment marker holds on
    CPython ``python_version`` on Linux x86-64 (hash and comment lines are skipped)."""
    environment = {"python_version": python_version, "python_full_version": f"{python_version}.0",
                   "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                   "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    found: dict[str, str] = {}
    for line in lines:
        match = PINNED.match(line.strip())
        if not match:
            continue
        name, version, marker = match.groups()
        if marker and not Marker(marker).evaluate(environment):
            continue
        found[canonicalize_name(name)] = version
    return found


def names(lines: list[str]) -> set[str]:
    """Package names of a ``pip list --format=freeze`` listing or a plain list of names."""
    return {canonicalize_name(re.split(r"[=<>~!\s;@]", line.strip(), maxsplit=1)[0])
            for line in lines if line.strip() and not line.lstrip().startswith("#")}


def download(name: str, version: str, python_version: str, dest: Path) -> None:
    """The wheel of ``name==version`` for the target, or one built here from its source."""
    target = [f"--platform={p}" for p in PLATFORMS] + [f"--python-version={python_version}", "--implementation=cp"]
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                          *target, "-d", str(dest), f"{name}=={version}"], capture_output=True, text=True)
    if got.returncode == 0:
        return
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-binary", name,
                            "-w", str(dest), f"{name}=={version}"], capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"{name}=={version}: no wheel for CPython {python_version} on Linux x86-64 "
                           f"({got.stderr.strip()[-300:]}) and none could be built ({built.stderr.strip()[-300:]})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--have", required=True, help="packages the GPU machine's Python already has (names, one a line)")
    parser.add_argument("--requirements", default="requirements.lock", help="name==version list (default: %(default)s)")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python, e.g. 3.12 (default: %(default)s)")
    parser.add_argument("-d", "--dest", default=".whl", help="folder for the wheels (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be downloaded")
    args = parser.parse_args(argv)
    lock = Path(args.requirements)
    if not lock.is_file():
        parser.error(f"{lock}: no such requirements file (make lock writes requirements.lock; pip freeze works too)")
    wanted = pinned(lock.read_text().splitlines(), args.python_version)
    have = names(Path(args.have).read_text().splitlines())
    missing = {name: version for name, version in sorted(wanted.items()) if name not in have and name != "interpsharp"}
    print(f"{len(missing)} of {len(wanted)} locked packages are not on the GPU machine:")
    print(" ".join(f"{n}=={v}" for n, v in missing.items()))
    if args.dry_run:
        return 0
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, version in missing.items():
        download(name, version, args.python_version, dest)
    size = sum(p.stat().st_size for p in dest.glob("*.whl"))
    print(f"{len(list(dest.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
