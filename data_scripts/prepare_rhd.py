#!/usr/bin/env python
"""Convert a downloaded RHD folder into a prepared cache (same as `bmc prepare-rhd`;
see the README for the download page and licence). Example:

    python data_scripts/prepare_rhd.py /path/to/rhd --out data/rhd_cache
"""
import sys

from bmclib.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["prepare-rhd", *sys.argv[1:]]))
