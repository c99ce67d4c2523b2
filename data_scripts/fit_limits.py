#!/usr/bin/env python
"""Fit BMC limits to 3D hand poses stored as a ``.npy`` array of shape (N, 21, 3).

    python data_scripts/fit_limits.py joints.npy --out limits.json [--coverage 0.999]

Joints must be right hands in the F order of ``bmclib.skeleton`` (mirror left hands
and reorder other data sets first, e.g. ``bmclib.skeleton.from_rhd``); any units.
Prints the limits as a table and writes versioned JSON that ``BMCLimits.load`` reads.
Limits for a benchmark must come from its 3D-labelled training data, never from the
evaluation split.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from bmclib.limits import BMCLimits

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("joints", type=Path, help=".npy file with (N, 21, 3) joints")
    p.add_argument("--out", type=Path, required=True, help="where to write the limits JSON")
    p.add_argument("--coverage", type=float, default=0.999, help="share of points kept inside each angle polygon")
    p.add_argument("--margin", type=float, default=0.0, help="dilate each polygon by this many radians")
    a = p.parse_args(argv)
    if not a.joints.is_file():
        print(f"fit_limits: no such file: {a.joints}", file=sys.stderr)
        return 2
    try:
        joints = np.load(a.joints, allow_pickle=False)
        limits = BMCLimits.fit(joints, coverage=a.coverage, margin=a.margin, source=str(a.joints))
    except ValueError as e:
        print(f"fit_limits: {a.joints}: {e}", file=sys.stderr)
        return 2
    print(limits.summary())
    print(f"wrote {limits.save(a.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
