"""Benchmark v1's runs (benchmark files such as ``results/benchmark_v2.yaml`` carry their own).

A run's folder name is made and read back by :func:`bmclib.config.run_name` and
:func:`bmclib.config.parse_run_name`.
"""
from __future__ import annotations

from typing import Any

__all__ = ["RUNS"]

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

