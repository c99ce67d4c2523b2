"""The ``bmc`` command line: one entry point, one subcommand per job.

    bmc bench               BMC loss / decomposition throughput (prints a table)
    bmc limits [FILE]       show the default limits, or a saved limits file
"""
from __future__ import annotations

import argparse
import sys


def _limits(argv: list[str]) -> int:
    from .limits import BMCLimits

    p = argparse.ArgumentParser(prog="bmc limits", description="Show BMC limits as a table.")
    p.add_argument("file", nargs="?", help="a limits JSON written by BMCLimits.save (default: literature limits)")
    p.add_argument("--save", metavar="PATH", help="also write the shown limits to PATH (versioned JSON)")
    a = p.parse_args(argv)
    try:
        limits = BMCLimits.load(a.file) if a.file else BMCLimits.default()
    except (OSError, ValueError) as e:
        print(f"bmc limits: {e}", file=sys.stderr)
        return 2
    print(limits.summary())
    if a.save:
        print(f"wrote {limits.save(a.save)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"bench": "bmclib.bench", "limits": None}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nbmc: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    if argv[0] == "bench":
        from .bench import main as bench_main

        return bench_main(argv[1:])
    return _limits(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
