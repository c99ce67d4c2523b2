#!/usr/bin/env python
"""Convert a downloaded FREIHAND folder into a prepared cache (same as `bmc prepare-freihand`;
see the README for the download page and licence). Example:

    python data_scripts/prepare_freihand.py /path/to/freihand --out data/freihand_cache
"""
import sys

from bmclib.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["prepare-freihand", *sys.argv[1:]]))
