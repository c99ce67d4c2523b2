#!/usr/bin/env python
"""Fit BMC limits to 3D hand poses (same as ``bmc fit-limits``): a ``.npy`` of (N, 21, 3)
right-hand joints in F order, or a prepared cache folder (its 3D-labelled samples).

    python data_scripts/fit_limits.py joints.npy --out limits.json [--coverage 0.999]

Limits for a benchmark must come from its 3D-labelled training data, never from the
evaluation split.
"""
import sys

from bmclib.cli import main as cli_main


def main(argv=None):
    return cli_main(["fit-limits", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
