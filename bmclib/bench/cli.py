"""The ``bmc`` program: the library's commands (:mod:`bmclib.cli`) and the benchmark's.

The benchmark's commands (experiments, studies, tables, reproduction, timing) need the
checkout's ``results/`` and ``notebooks/`` or explicit paths; the library's work anywhere.
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Callable

from .. import cli as library

def _experiment_args(p: argparse.ArgumentParser) -> None:
    from .experiment import RUNS
    from ..train import PRESETS

    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="data size and training preset")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of every run")
    p.add_argument("--runs", nargs="+", help=f"runs to do (default: all of the benchmark's; v1: {', '.join(RUNS)})")
    p.add_argument("--benchmark", help="a pre-registered benchmark file, e.g. results/benchmark_v2.yaml "
                                       "(default: benchmark v1, the runs of bmclib.bench.experiment)")
    p.add_argument("--data", default="data/synth", help="where the synthetic domains are made")
    p.add_argument("--runs-dir", default="data/runs", help="checkpoints and logs")
    p.add_argument("--results", default="results", help="metrics, tables and figures")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--level", help="a data level of the benchmark file (benchmark v3: glove or skin; default its first)")
    p.add_argument("--force", action="store_true", help="redo finished runs")
    p.add_argument("--jobs", type=int, default=1,
                   help="train this many runs at once on the CPU, cores/jobs threads each (2 on 2 cores: 1.4x the "
                        "images/s, bmc bench jobs)")
    p.add_argument("--evaluate-only", action="store_true",
                   help="re-evaluate the runs trained to the end (e.g. after a metric was added); train nothing")


def _experiment(a: argparse.Namespace) -> int:
    from .experiment import run_experiment

    table = run_experiment(a.preset, a.seeds, a.runs, a.data, a.runs_dir, a.results, a.force, device=a.device,
                           jobs=a.jobs, evaluate_only=a.evaluate_only, benchmark=a.benchmark, level=a.level)
    print(Path(table).read_text())
    return 0



def _tables_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results", help="results root (reads runs/*/metrics.json)")
    p.add_argument("--refine", nargs="+", metavar="RUN",
                   help="also measure bmc refine on these runs' target-test predictions (of --bench)")
    p.add_argument("--bench", default="v2", help="the benchmark part of the --refine runs' names (v2; v3-glove: a level)")
    p.add_argument("--preset", default="cpu", help="preset of the --refine runs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the --refine runs")


def _tables(a: argparse.Namespace) -> int:
    from .tables import build_all, refine_study

    for path in build_all(a.results):
        print(f"wrote {path}")
    if a.refine:
        print(f"wrote {refine_study(a.preset, a.refine, a.seeds, a.results, bench=a.bench)}")
    return 0


def _module(name: str):
    """``(add_arguments, run)`` of a benchmark module with ``add_cli_arguments`` and ``cli_main`` (``bmclib.bench.NAME``)."""
    def args(p: argparse.ArgumentParser) -> None:
        importlib.import_module(f"bmclib.bench.{name}").add_cli_arguments(p)

    def run(a: argparse.Namespace) -> int:
        return importlib.import_module(f"bmclib.bench.{name}").cli_main(a)
    return args, run


#: the benchmark's commands: name -> (one-line summary, add_arguments, run), after the library's in ``bmc -h``
BENCH_COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "experiment": ("the synthetic benchmark: all runs x seeds, then the table and figure", _experiment_args,
                   _experiment),
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
    "tables": ("rebuild every table and its figure from results/runs/*/metrics.json", _tables_args, _tables),
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
