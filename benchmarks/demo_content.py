"""Has a finished demo run something to show in every figure? (issue 13)

Reads the run's tables and prints, per item of issue 13's list, whether it is there and the
numbers behind the answer (interpsharp.demo.content), then the held-out outcome per model.
Exit status 1 when an item is missing. Run it after `make demo`, and on runs of other demo
seeds (a copy of config/demo.yaml with another demo.seed, run in a directory of its own:
``snakemake -s Snakefile -d runs/seed1 --configfile seed1.yaml --cores 2``):

    python benchmarks/demo_content.py --results results/demo
    python benchmarks/demo_content.py --results runs/seed1/results/demo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interpsharp.demo.content import TABLES, accuracy_table, content_checks  # noqa: E402
from interpsharp.tables import read_tsv  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results/demo", help="results folder of the run (default: %(default)s)")
    parser.add_argument("--main-ood", default="clutter", help="the main OOD set (default: %(default)s)")
    args = parser.parse_args(argv)
    folder = Path(args.results) / "tables"
    missing = [name for name in TABLES if not (folder / f"{name}.tsv").is_file()]
    if missing:
        print(f"{folder}: no {', '.join(f'{m}.tsv' for m in missing)}; run the workflow first", file=sys.stderr)
        return 2
    tables = {name: read_tsv(folder / f"{name}.tsv") for name in TABLES}
    checks = content_checks(tables, args.main_ood)
    for row in checks.itertuples():
        print(f"[{'x' if row.passed else ' '}] {row.item}: {row.detail}")
    print()
    print(accuracy_table(tables, args.main_ood))
    return 0 if checks["passed"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
