"""The ``bmc`` program: the library's commands (:mod:`bmclib.cli`) and the benchmark's.

The benchmark's commands (experiments, studies, tables, reproduction, timing) need the
checkout's ``results/`` and ``notebooks/`` or explicit paths; the library's work anywhere.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Callable

from .. import cli as library

def _module(name: str):
    """``(add_arguments, run)`` of a benchmark module with ``add_cli_arguments`` and ``cli_main`` (``bmclib.bench.NAME``)."""
    def args(p: argparse.ArgumentParser) -> None:
        importlib.import_module(f"bmclib.bench.{name}").add_cli_arguments(p)

    def run(a: argparse.Namespace) -> int:
        return importlib.import_module(f"bmclib.bench.{name}").cli_main(a)
    return args, run


#: the benchmark's commands: name -> (one-line summary, add_arguments, run), after the library's in ``bmc -h``
BENCH_COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "experiment": ("the synthetic benchmark: all runs x seeds, then the table and figure", *_module("experiment")),
    "regime": ("the regime map: where BMC can turn 2D into depth (keypoints, resumable)", *_module("regime")),
    "model-study": ("which keypoint network: candidates trained on source 3D, 2D error on source validation",
                    *_module("model_study")),
    "wiring-study": ("how BMC is wired into training: candidates on held-out source hands (source validation)",
                     *_module("wiring_study")),
    "controls": ("a benchmark's metrics and test conditions on positive and negative controls", *_module("controls")),
    "gpu-check": ("render, train runs 1-4 briefly, evaluate, and print images/s, BMC share and peak memory",
                  *_module("gpu_check")),
    "balance": ("the 2D-loss / BMC pull on the keypoints, on a source validation split", *_module("balance")),
    "verdict": ("a pre-registered test with a validated metric (benchmark v3): table, verdict and figure",
                *_module("verdict")),
    "scores": ("score runs once per image into results/runs/<run>/scores.npz (what the verdict reads)",
               *_module("scores")),
    "summary": ("rewrite the README's benchmark-v3 sections from the committed tables (--check: compare only)",
                *_module("summary")),
    "tables": ("rebuild every table and its figure from results/runs/*/metrics.json", *_module("tables")),
    "reproduce": ("synthetic data + every notebook through papermill (make reproduce)", *_module("reproduce")),
    "bench": ("throughput benchmarks (BMC loss, synthesis, training, jobs, FreiHAND scoring)", *_module("timing")),
    "fuzz": ("BMC loss gradients on degenerate poses, family by family (the robustness bound)", *_module("fuzz")),
}

#: every command of ``bmc``: the library's, then the benchmark's
COMMANDS = {**library.COMMANDS, **BENCH_COMMANDS}

#: papermill's execution errors are RuntimeErrors: bad input for ``bmc reproduce``
EXTRA_ERRORS = {"reproduce": (RuntimeError,)}


def main(argv: list[str] | None = None) -> int:
    """The ``bmc`` console script."""
    return library.main(argv, COMMANDS, EXTRA_ERRORS)


if __name__ == "__main__":
    raise SystemExit(main())
