#!/usr/bin/env python
"""Render the synthetic benchmark's domains (same as ``bmc synth``).

    python data_scripts/synth.py --domain source --preset cpu --seed 0 --out data/synth/source
    python data_scripts/synth.py --domain target --preset cpu --seed 1 --out data/synth/target
"""
import sys

from bmclib.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["synth", *sys.argv[1:]]))
