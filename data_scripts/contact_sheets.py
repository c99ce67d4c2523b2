#!/usr/bin/env python
"""Contact sheets of both synthetic domains, with their 2D labels drawn on (filled dots:
visible joints, hollow: occluded), into results/figures/ with a provenance file.

    python data_scripts/contact_sheets.py [--out results/figures] [--seed 0] [--num 32]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    from bmclib.data.synth import contact_sheet, generate_batch
    from bmclib.results import provenance, write_json_atomic

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results/figures"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=32)
    p.add_argument("--size", type=int, default=128)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    files = {}
    for domain in ("source", "target"):
        batch = generate_batch(domain, a.num, a.size, torch.Generator().manual_seed(a.seed))
        path = a.out / f"synth_{domain}.png"
        contact_sheet(batch, str(path), cols=8)
        files[domain] = path.name
        print(f"wrote {path}")
    write_json_atomic(a.out / "synth_sheets.json", provenance(config=vars(a) | {"out": str(a.out)}, files=files,
                                                              seed=a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
