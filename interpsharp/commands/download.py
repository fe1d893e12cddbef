"""``interpsharp download``: fetch a checkpoint or dataset archive, verified, and unpack it."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download a file (resumable, sha256-verified, recorded in a manifest)",
        description=(
            "Download SOURCE (a URL, or a registered source: model_soups, imagenet-a, imagenet-r, "
            "imagenetv2) to OUTPUT. The file appears under its name only when complete and its "
            "size and sha256 match; the hash is recorded in --manifest on first download and "
            "checked on every later run. An existing OUTPUT is verified instead of fetched."
        ),
    )
    parser.add_argument("source", help="URL or registered source name")
    parser.add_argument("-o", "--output", required=True, help="destination file")
    parser.add_argument("--index", type=int, help="checkpoint index i for model_soups (model_{i}.pt)")
    parser.add_argument("--sha256", help="expected sha256 (wins over the manifest)")
    parser.add_argument("--size", type=int, help="expected size in bytes")
    parser.add_argument("--manifest", help="JSON manifest recording url, sha256, size, download time per file name")
    parser.add_argument("--unpack", metavar="DIR", help="unpack the archive (.tar, .tar.gz, .tgz, .zip) into DIR and print its root")
    parser.add_argument("--verify-only", action="store_true", help="only re-check an existing OUTPUT against --sha256 / --manifest")
    parser.add_argument("--retries", type=int, default=5, help="retries after connection errors, 5xx answers and short reads")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a connection counts as lost")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interpsharp.download import DEFAULT_SOURCES, DownloadError, download_file, resolve_source, unpack_archive, verify_file

    try:
        if args.verify_only:
            print(verify_file(args.output, args.manifest, args.sha256, args.size))
            return 0
        if args.source in DEFAULT_SOURCES:
            source = resolve_source(args.source, {"sha256": args.sha256, "size": args.size}, index=args.index)
            url, sha256, size = source.url, source.sha256, source.size
        else:
            url, sha256, size = args.source, args.sha256, args.size
        record = download_file(
            url, args.output, sha256, size, args.manifest, retries=args.retries, timeout=args.timeout, progress=not args.quiet
        )
        print(f"{record.sha256}  {record.path}  ({record.size} bytes, {'downloaded' if record.downloaded else 'verified'})")
        if args.unpack:
            print(unpack_archive(record.path, args.unpack))
    except DownloadError as err:
        print(f"interpsharp download: error: {err}", file=sys.stderr)
        return 2
    return 0
