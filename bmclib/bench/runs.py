"""Benchmark v1's runs (benchmark files such as ``results/benchmark_v2.yaml`` carry their own).

And how a run's folder under ``data/runs/`` and ``results/runs/`` is named and read back
(:func:`run_name`, :func:`parse_run_name`); the presets are the training presets (:data:`bmclib.config.PRESETS`).
"""
from __future__ import annotations

import re
from typing import Any

from ..config import PRESETS

__all__ = ["RUNS", "NAME_RE", "run_name", "parse_run_name"]

#: benchmark v1's runs (benchmark files such as ``results/benchmark_v2.yaml`` carry their own)
RUNS: dict[str, dict[str, Any]] = {
    "1_source3d": dict(weak=None, use_bmc=False),
    "2_target2d": dict(weak="2d", use_bmc=False),
    "3a_bmc_bl": dict(weak="2d", use_bmc=True, bmc_terms="bl"),
    "3b_bmc_bl_rb": dict(weak="2d", use_bmc=True, bmc_terms="bl+rb"),
    "3_bmc_all": dict(weak="2d", use_bmc=True, bmc_terms="all"),
    "4_target3d_oracle": dict(weak="3d", use_bmc=False),
    "5_bmc_literature": dict(weak="2d", use_bmc=True, bmc_terms="all", limits="default"),
    "6_bmc_depth_grad": dict(weak="2d", use_bmc=True, bmc_terms="all", bmc_grad="depth"),
    # *_frac: a share of the preset's steps
    "7_bmc_warmup": dict(weak="2d", use_bmc=True, bmc_terms="all", bmc_start_frac=0.5, bmc_ramp_frac=0.1),
    "8_bmc_lambda_0.1": dict(weak="2d", use_bmc=True, bmc_terms="all", lambda_bl=0.1, lambda_rb=0.1, lambda_a=0.1),
}


#: ``[lifting_]<preset>_[<bench>_]<run>_seed<k>``; ``<bench>`` may name a data level (``v3-glove``)
NAME_RE = re.compile(r"^(?P<prefix>lifting_)?(?P<preset>" + "|".join(sorted(PRESETS, key=len, reverse=True))
                     + r")_(?:(?P<bench>v\d+(?:-[a-z]+)?)_)?(?P<run>.+)_seed(?P<seed>\d+)$")


def run_name(preset: str, run: str, seed: int, bench: str | None = None, lifting: bool = False) -> str:
    """The folder name of one run of one seed under ``data/runs/`` and ``results/runs/`` (``bench``
    None: benchmark v1; ``lifting``: a keypoint lifter's run, :mod:`bmclib.bench.lifting_runs`).

        >>> run_name("cpu", "3_bmc_all", 2, "v2")
        'cpu_v2_3_bmc_all_seed2'
        >>> parse_run_name("cpu_v3-glove_2_target2d_seed0")["bench"]
        'v3-glove'
        >>> parse_run_name(run_name("tiny", "bmc", 1, lifting=True))["kind"]
        'lifting'
    """
    name = f"{preset}_{bench}_{run}_seed{seed}" if bench else f"{preset}_{run}_seed{seed}"
    return f"lifting_{name}" if lifting else name


def parse_run_name(name: str) -> dict[str, Any] | None:
    """``{"kind", "preset", "bench", "run", "seed"}`` of a run folder's name, or None for another
    folder. ``kind`` is ``"benchmark"`` or ``"lifting"``; ``bench`` is ``"v1"`` when absent."""
    m = NAME_RE.match(name)
    if m is None:
        return None
    return {"kind": "lifting" if m["prefix"] else "benchmark", "preset": m["preset"], "bench": m["bench"] or "v1",
            "run": m["run"], "seed": int(m["seed"])}
