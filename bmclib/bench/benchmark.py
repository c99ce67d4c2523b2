"""Pre-registered benchmark definitions: one committed YAML file the experiment reads.

A benchmark file (``results/benchmark_v2.yaml``) freezes what an image experiment may not
tune after seeing target-test: the synthetic data's settings, the limits rule, the lambdas
and the 2D/BMC loss balance, the runs, and the stated test with its pass rule. It records
the numbers it was chosen from (the regime map, the source-validation balance study) and is
committed before any image run of that benchmark is evaluated on target-test.

``bmc experiment --benchmark results/benchmark_v2.yaml`` trains and evaluates its runs with
these settings (runs named ``<preset>_<name>_<run>_seed<k>``, data under
``data/synth/<name>_<preset>_<size>px_seed0``).

Example:
    >>> b = load_benchmark(DEFAULT_BENCHMARK)
    >>> b.name, b.limits["rule"]
    ('v2', 'source_quantile')
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkout import find_checkout

__all__ = ["Benchmark", "load_benchmark", "verdict", "DEFAULT_BENCHMARK", "BENCHMARK_FORMAT", "TRAIN_KEYS"]

BENCHMARK_FORMAT = "bmclib.benchmark"  # the files' format name (not a module path): frozen files carry it
#: benchmark v2's file in the checkout (the working directory's ``results/`` where there is no checkout)
DEFAULT_BENCHMARK = (find_checkout() or Path(".")) / "results" / "benchmark_v2.yaml"
#: training fields a benchmark may set (everything else comes from the preset)
TRAIN_KEYS = ("loss_2d", "w_2d", "w_z", "w_root", "lambda_bl", "lambda_rb", "lambda_a", "bmc_root", "bmc_grad",
              "root_margin", "batch_weak", "bmc_start_frac", "bmc_ramp_frac", "cpu_path")


@dataclass(frozen=True)
class Benchmark:
    """A parsed benchmark file (see the module docstring)."""

    name: str
    path: str
    data: dict[str, Any]
    limits: dict[str, Any]
    training: dict[str, Any]
    runs: dict[str, dict[str, Any]]
    test: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def train_overrides(self, batch_size: int, steps: int | None = None) -> dict[str, Any]:
        """Config overrides for every run; ``batch_weak: equal`` becomes ``batch_size`` and
        ``bmc_start_frac`` / ``bmc_ramp_frac`` become steps of a ``steps``-step run."""
        out = dict(self.training)
        # a file that names no CPU compute path ran on the reference one (every file up to v3); new
        # files say `cpu_path: fast`
        out.setdefault("cpu_path", "reference")
        if out.get("batch_weak") == "equal":
            out["batch_weak"] = batch_size
        for key in ("bmc_start", "bmc_ramp"):
            if f"{key}_frac" in out:
                if steps is None:
                    raise ValueError(f"{self.path}: training.{key}_frac needs the run's number of steps")
                out[key] = int(round(out.pop(f"{key}_frac") * steps))
        return out

    @property
    def levels(self) -> tuple[str, ...]:
        """The data levels (appearances) the benchmark is run at; v1 / v2: skin only."""
        return tuple(self.data.get("levels", ("skin",)))

    @property
    def data_seed(self) -> int:
        """The seed of the benchmark's synthetic data (its folder says it)."""
        return int(self.data.get("seed", 0))

    def run_bench_name(self, level: str | None = None) -> str:
        """The benchmark part of its runs' names: ``v2``; ``v3-glove`` for a level of a benchmark with levels."""
        if "levels" not in self.data:
            return self.name
        level = level or self.levels[0]
        if level not in self.levels:
            raise ValueError(f"{self.path}: level {level!r} is not one of data.levels {list(self.levels)}")
        return f"{self.name}-{level}"

    def fit_limits(self, xyz, source: str):
        """The benchmark's limits, fitted by its rule on 3D-labelled poses ``xyz (N, 21, 3)``."""
        from ..limits import DEFAULT_COVERAGE, limits_by_rule

        rule = self.limits["rule"]
        return limits_by_rule(rule, xyz, self.limits.get("hull_coverage", DEFAULT_COVERAGE),
                              self.limits.get("interval_coverage", 1.0), source=source)


def _need(d: Any, key: str, where: str, kind=dict):
    if not isinstance(d, dict) or key not in d:
        raise ValueError(f"{where}: missing field {key!r}")
    if kind is not None and not isinstance(d[key], kind):
        raise ValueError(f"{where}: field {key!r} must be a {kind.__name__}, got {type(d[key]).__name__}")
    return d[key]


def load_benchmark(path: str | os.PathLike = DEFAULT_BENCHMARK) -> Benchmark:
    """Read and check a benchmark file; every error names the file and the field. A relative path
    that is not found from the working directory is looked up in the checkout too (a notebook
    opened in JupyterLab runs in ``notebooks/``)."""
    import yaml

    path = Path(path)
    root = find_checkout()
    if not path.is_file() and not path.is_absolute() and root is not None and (root / path).is_file():
        path = root / path
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    where = str(path)
    if not isinstance(raw, dict) or raw.get("format") != BENCHMARK_FORMAT:
        raise ValueError(f"{where}: not a bmclib benchmark file (expected \"format: {BENCHMARK_FORMAT}\")")
    name = _need(raw, "name", where, str)
    data = _need(raw, "data", where)
    limits = _need(raw, "limits", where)
    training = _need(raw, "training", where)
    runs = _need(raw, "runs", where)
    test = _need(raw, "test", where)
    from ..limits import LIMIT_RULES

    if limits.get("rule") not in LIMIT_RULES:
        raise ValueError(f"{where}: limits.rule must be one of {LIMIT_RULES}, got {limits.get('rule')!r}")
    if limits["rule"] in ("source_quantile", "source_box"):
        for k in ("interval_coverage", "hull_coverage"):
            v = _need(limits, k, f"{where}: limits", None)
            if not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ValueError(f"{where}: limits.{k} must be in (0, 1], got {v!r}")
    unknown = set(training) - set(TRAIN_KEYS)
    if unknown:
        raise ValueError(f"{where}: training: unknown keys {sorted(unknown)} (allowed: {list(TRAIN_KEYS)})")
    for run, spec in runs.items():
        if not isinstance(spec, dict) or spec.get("weak", None) not in (None, "2d", "3d"):
            raise ValueError(f"{where}: runs.{run}: expected a mapping with weak: null | 2d | 3d")
    for k in ("n_hands_source", "n_hands_target"):
        v = data.get(k)
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ValueError(f"{where}: data.{k} must be null or an int >= 1, got {v!r}")
    if "seed" in data and (not isinstance(data["seed"], int) or isinstance(data["seed"], bool) or data["seed"] < 0):
        raise ValueError(f"{where}: data.seed must be an int >= 0, got {data['seed']!r}")
    if "levels" in data:
        from ..data.synth import APPEARANCES

        lv = data["levels"]
        if not isinstance(lv, list) or not lv or any(x not in APPEARANCES for x in lv) or len(set(lv)) != len(lv):
            raise ValueError(f"{where}: data.levels must be a non-empty list of distinct appearances from "
                             f"{list(APPEARANCES)}, got {lv!r}")
    for k in ("bmc_start_frac", "bmc_ramp_frac"):
        v = training.get(k)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1):
            raise ValueError(f"{where}: training.{k} must be a number in [0, 1], got {v!r}")
    if "metric" in test:  # benchmark v3's test: a validated metric and conditions (bmclib.bench.stats)
        from .stats import CONDITIONS, METRICS

        if test["metric"] not in METRICS:
            raise ValueError(f"{where}: test.metric must be one of {list(METRICS)}, got {test['metric']!r}")
        conds = test.get("conditions")
        if not isinstance(conds, list) or not conds or any(c not in CONDITIONS for c in conds):
            raise ValueError(f"{where}: test.conditions must be a non-empty list from {list(CONDITIONS)}, got {conds!r}")
        for k in ("base_run", "bmc_run", "oracle_run"):
            if test.get(k) not in runs:
                raise ValueError(f"{where}: test.{k} must name one of the runs {list(runs)}, got {test.get(k)!r}")
        for key in ("seeds", "report_seeds"):
            seeds = test.get(key)
            if key == "report_seeds" and key not in test:
                continue
            if (not isinstance(seeds, list) or len(seeds) < 2
                    or any(not isinstance(x, int) or isinstance(x, bool) or x < 0 for x in seeds)
                    or len(set(seeds)) != len(seeds)):
                raise ValueError(f"{where}: test.{key} must list at least two distinct int seeds >= 0, got {seeds!r}")
        if "level" in test and test["level"] not in data.get("levels", []):
            raise ValueError(f"{where}: test.level must be one of data.levels {data.get('levels')}, got {test['level']!r}")
    return Benchmark(name, where, data, limits, training, runs, test, raw)


def verdict(bench: Benchmark, sub) -> dict[str, Any]:
    """The benchmark's stated test on its runs' metrics (``sub``: rows of
    :func:`bmclib.bench.tables.collect` for this benchmark and preset). Returns the numbers, whether
    each condition holds, and a sentence; ``passed`` is None while a run or seed is missing."""
    import numpy as np

    t = bench.test
    metric, flat = t["primary_metric"], t.get("flat_metric", "depth_flat_mm")
    base, weak, bmc = t["base_run"], t["weak_run"], t["bmc_run"]
    need = int(t.get("min_seeds", 3))
    piv = sub.pivot_table(index="seed", columns="run", values=metric) if len(sub) else None
    if piv is None or any(r not in piv for r in (base, weak, bmc)) or len(piv[[base, weak, bmc]].dropna()) < need:
        return {"passed": None, "text": f"**Pre-registered test ({bench.name}):** not evaluated yet: it needs runs "
                f"{base}, {weak} and {bmc} with at least {need} paired seeds of `{metric}`."}
    p = piv[[base, weak, bmc]].dropna()
    flat_v = sub.groupby("seed")[flat].mean().reindex(p.index)
    r_weak = (1 - p[weak] / p[base]).mean()
    r_bmc = (1 - p[bmc] / p[base]).mean()
    f_weak = (1 - p[weak] / flat_v).mean()
    f_bmc = (1 - p[bmc] / flat_v).mean()
    every_seed = bool((p[bmc] < p[weak]).all())
    cond = {"vs run 1: reduction with BMC >= 2x without, and > 0": bool(r_bmc > 0 and r_bmc >= 2 * r_weak),
            "vs a flat hand: BMC run beats flat, by >= 2x the run without BMC": bool(f_bmc > 0 and f_bmc >= 2 * f_weak),
            "BMC run better than the run without BMC in every seed": every_seed}
    passed = all(cond.values())
    text = (f"**Pre-registered test ({bench.name}, `{metric}`, {len(p)} paired seeds): "
            f"{'PASSED' if passed else 'FAILED'}.** Reduction vs run 1: {100 * r_weak:.1f}% without BMC, "
            f"{100 * r_bmc:.1f}% with; vs a flat hand: {100 * f_weak:.1f}% and {100 * f_bmc:.1f}%; "
            + "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in cond.items()) + ".")
    return {"passed": passed, "conditions": cond, "reduction_vs_1": {"weak": float(r_weak), "bmc": float(r_bmc)},
            "reduction_vs_flat": {"weak": float(f_weak), "bmc": float(f_bmc)}, "seeds": int(len(p)),
            "text": text, "finite": bool(np.isfinite([r_weak, r_bmc, f_weak, f_bmc]).all())}
