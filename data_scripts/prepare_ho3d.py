#!/usr/bin/env python
"""Convert a downloaded HO3D folder into a prepared cache (same as `bmc prepare-ho3d`;
see the README for the download page and licence). Example:

    python data_scripts/prepare_ho3d.py /path/to/ho3d --out data/ho3d_cache
"""
import sys

from bmclib.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["prepare-ho3d", *sys.argv[1:]]))
