"""``interpsharp provenance``: show a results folder's provenance record, or check it against the
present checkout, config files and environment."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "provenance",
        help="what a results folder was made with, and what differs now",
        description=(
            "Read RESULTS/provenance.json (written by the workflow at the end of a run). With --check, compare "
            "it with the present: the git checkout (commit, uncommitted changes), the config files the run used "
            "as they are now (merged and filled with the schema's defaults, as Snakemake does), every installed "
            "package version, the checkpoints and caches on disk (sha256), and every table's provenance sidecar "
            "(tables made under another stamp than the run's, with why). Lists each difference; exit status 1 "
            "when anything differs, 0 when everything matches."
        ),
        epilog="example: interpsharp provenance --check results/demo",
    )
    parser.add_argument("results", metavar="RESULTS", help="a results folder, results/<world>")
    parser.add_argument("--check", action="store_true", help="compare with the present checkout and environment")
    parser.add_argument("--repo", help="the checkout to compare with (default: the one the run recorded)")
    parser.add_argument(
        "--no-data", action="store_true",
        help="skip rehashing checkpoints and caches and reading table sidecars (fast; code, config and packages only)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from interpsharp.provenance import check, format_findings

    if not args.check:
        record = json.loads((Path(args.results) / "provenance.json").read_text())
        summary = {key: record[key] for key in ("created", "stamp", "code", "config_sha256", "config_files", "seeds",
                                                "snakemake_command", "hardware", "checkpoints", "caches")}
        print(json.dumps(summary, indent=1))
        return 0
    record, findings = check(args.results, repository=args.repo, data=not args.no_data)
    print(format_findings(args.results, record, findings))
    return 1 if findings else 0
