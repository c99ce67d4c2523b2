"""The regime map: where can BMC turn 2D into depth, and where can it not?

Keypoints only (no images), so every cell takes seconds: a lifter (:mod:`bmclib.lifting`)
trained on the source domain's 3D predicts target depths from 2D keypoints with Gaussian
pixel noise; BMC then acts in one of two ways, and we measure the depth error on target
keypoints (a set drawn for the map with its own seeds, never the image benchmark's
evaluation set) with and without it:

    tto      test-time optimisation along the camera rays (:func:`bmclib.refine.refine`):
             each pose's depths move into the limits while its 2D stays fixed
    lifter   the source-only lifter fine-tuned with the target's 2D-only samples judged by BMC
             (source 3D loss kept, the closed-form root guarded; :func:`bmclib.lifting.train_lifter`)

as a function of

    noise_px     2D noise, pixels of a 128 px crop: 0, 0.5, 1, 2, 4
    limits       literature       ``BMCLimits.default()``
                 source_minmax    min / max intervals, 99.9% hulls, on source 3D (benchmark v1's rule)
                 source_quantile  0.5-99.5% intervals, 99% hulls, on source 3D
                 source_box       as source_quantile, but independent (flexion, abduction) intervals
                                  per joint instead of the hulls (the paper's envelope ablation)
                 target_fit_ub    source_quantile's rule fitted on the *target's* 3D (an upper
                                  bound: a weakly supervised run never has these)
                 exact_lengths_ub source_quantile with each hand's own bone-length ratios in place
                                  of the length intervals (an upper bound)
    population   continuous (every sample its own hand) or 20_hands (each domain drawn from 20
                 people, as RHD has 20 characters)

Each (population, noise, seed) is one part file ``results/runs/regime_<preset>/<cell>.json``
with provenance, written atomically; a re-run skips finished parts with the same config, so
an interrupted map resumes. ``bmc regime --preset cpu --jobs 2`` runs the map and writes
``results/tables/regime_map.{csv,md}`` and ``results/figures/regime_map.png``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..limits import LIMIT_RULES as LIBRARY_RULES

__all__ = ["RegimeConfig", "LIMIT_RULES", "POPULATIONS", "METHODS", "fit_rule", "cell_sets", "run_cell",
           "run_regime_map", "regime_summary", "regime_table", "regime_figure", "lambda_study", "finetune_control"]

#: the library's rules (:data:`bmclib.limits.LIMIT_RULES`) and the map's two upper bounds
LIMIT_RULES = (*LIBRARY_RULES, "target_fit_ub", "exact_lengths_ub")
POPULATIONS = {"continuous": None, "20_hands": 20}
METHODS = ("tto", "lifter")
UPPER_BOUNDS = ("target_fit_ub", "exact_lengths_ub")


@dataclass
class RegimeConfig:
    """Everything the map depends on (saved in every part file)."""

    preset: str = "cpu"
    noise_px: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    limits: tuple[str, ...] = LIMIT_RULES
    populations: tuple[str, ...] = tuple(POPULATIONS)
    methods: tuple[str, ...] = METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    image_size: int = 128
    n_train: int = 5000  # keypoint sets per domain
    n_test: int = 500
    hidden: int = 256
    steps: int = 1200  # source-only lifter
    finetune_steps: int = 300  # + target 2D + BMC (the lifter method)
    batch_size: int = 256
    lr: float = 1e-3
    finetune_lr: float = 3e-4
    lambda_bmc: float = 1.0
    refine_steps: int = 200
    refine_lr: float = 0.02
    refine_prior: float = 0.1
    interval_coverage: float = 0.99  # the quantile rules
    hull_coverage: float = 0.99

    _PRESETS = {"tiny": dict(noise_px=(0.0, 2.0), limits=("literature", "source_quantile", "exact_lengths_ub"),
                             populations=("continuous",), seeds=(0,), n_train=256, n_test=64, hidden=32, steps=20,
                             finetune_steps=10, batch_size=32, refine_steps=10),
                "cpu": {}}

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "RegimeConfig":
        if name not in cls._PRESETS:
            raise ValueError(f"regime preset must be one of {sorted(cls._PRESETS)}, got {name!r}")
        cfg = cls(preset=name, **{**cls._PRESETS[name], **overrides})
        for rule in cfg.limits:
            if rule not in LIMIT_RULES:
                raise ValueError(f"limits rule {rule!r} is not one of {LIMIT_RULES}")
        for pop in cfg.populations:
            if pop not in POPULATIONS:
                raise ValueError(f"population {pop!r} is not one of {sorted(POPULATIONS)}")
        for m in cfg.methods:
            if m not in METHODS:
                raise ValueError(f"method {m!r} is not one of {METHODS}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def lifting(self, noise_px: float, seed: int):
        """The :class:`~bmclib.lifting.LiftingConfig` of the source-only lifter of one cell."""
        from ..lifting import LiftingConfig

        return LiftingConfig(preset=self.preset, n_train=self.n_train, n_test=self.n_test, image_size=self.image_size,
                             noise_px=noise_px, hidden=self.hidden, steps=self.steps, batch_size=self.batch_size,
                             lr=self.lr, lambda_bmc=self.lambda_bmc, seed=seed)

    def cell_config(self) -> dict[str, Any]:
        """The fields a single cell depends on (the axes excluded)."""
        d = self.to_dict()
        for k in ("noise_px", "populations", "seeds", "preset"):
            d.pop(k)
        return d


def fit_rule(rule: str, source_xyz, target_xyz, cfg: RegimeConfig):
    """The :class:`~bmclib.limits.BMCLimits` of a limits rule (see the module docstring)."""
    import warnings

    from ..limits import DEFAULT_COVERAGE, limits_by_rule

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a widened interval is recorded in meta["widened"]
        if rule == "source_minmax":  # min / max: every point, polygons at the library's default coverage
            return limits_by_rule(rule, source_xyz, DEFAULT_COVERAGE, source="regime: source min/max")
        if rule == "target_fit_ub":  # source_quantile's rule on the target's own 3D
            return limits_by_rule("source_quantile", target_xyz, cfg.hull_coverage, cfg.interval_coverage,
                                  source=f"regime: {rule}")
        return limits_by_rule(rule, source_xyz, cfg.hull_coverage, cfg.interval_coverage, source=f"regime: {rule}")


def _sets(population: str, seed: int, cfg: RegimeConfig):
    from ..data.synth import DOMAINS
    from ..lifting import keypoint_set

    n_hands = POPULATIONS[population]
    s = 7919 * (seed + 1) + (0 if n_hands is None else 104729)
    # two different peoples: the source's and the target's (as RHD's characters and FreiHAND's subjects)
    src = dataclasses.replace(DOMAINS["source"], n_hands=n_hands, population_seed=s + 11)
    tgt = dataclasses.replace(DOMAINS["target"], n_hands=n_hands, population_seed=s + 12)
    # the target's train and test share the population's hands (one people, two splits)
    return {"source": keypoint_set(src, cfg.n_train, cfg.image_size, 0.0, s + 1),
            "target": keypoint_set(tgt, cfg.n_train + cfg.n_test, cfg.image_size, 0.0, s + 2)}


def cell_sets(population: str, noise_px: float, seed: int, cfg: RegimeConfig) -> dict[str, Any]:
    """The keypoint sets of one cell: ``source`` (3D), ``target`` (2D only for every method but
    the upper bounds) and ``test`` (target hands with 3D), with ``noise_px`` pixel noise."""
    import torch

    from ..lifting import KeypointSet

    clean = _sets(population, seed, cfg)
    g = torch.Generator().manual_seed(int(1000 * noise_px) + 31 * seed + 5)
    tgt_all, n = clean["target"], cfg.n_train
    split = lambda s, sl: KeypointSet(s.uv[sl], s.K[sl], s.xyz[sl], s.z_rel[sl], s.bone_ratio[sl])  # noqa: E731
    return {"source": clean["source"].with_noise(noise_px, g),
            "target": split(tgt_all, slice(0, n)).with_noise(noise_px, g),
            "test": split(tgt_all, slice(n, None)).with_noise(noise_px, g)}


def run_cell(population: str, noise_px: float, seed: int, cfg: RegimeConfig) -> dict[str, Any]:
    """One (population, noise, seed): every limits rule with every method. Returns
    ``{"rows": [...], ...}``; one row per (method, limits) plus the source-only baseline."""
    import torch

    from ..lifting import predict_depths, evaluate_lifter, train_lifter
    from ..refine import refine

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    sets = cell_sets(population, noise_px, seed, cfg)
    lcfg = cfg.lifting(noise_px, seed)
    base, _ = train_lifter(lcfg, sets, "source3d", progress=False)
    test = sets["test"]
    z0 = predict_depths(base, test)
    rows = []

    def row(method: str, rule: str, z) -> dict[str, Any]:
        m = evaluate_lifter(z, test)
        return {"population": population, "noise_px": noise_px, "seed": seed, "method": method, "limits": rule,
                **{k: m[k] for k in ("depth_mm", "depth_abs_mm", "epe_3d_mm", "pa_mpjpe_mm", "depth_flat_mm",
                                     "no_root_share")}}

    rows.append(row("none", "none", z0))
    src_xyz, tgt_xyz = sets["source"].xyz.double(), sets["target"].xyz.double()
    ft_cfg = dataclasses.replace(lcfg, steps=cfg.finetune_steps, lr=cfg.finetune_lr)
    for rule in cfg.limits:
        limits = fit_rule("source_quantile" if rule == "exact_lengths_ub" else rule, src_xyz, tgt_xyz, cfg)
        exact = rule == "exact_lengths_ub"
        if "tto" in cfg.methods:
            z = refine(z0, test.uv, test.K, limits, cfg.refine_steps, cfg.refine_lr, cfg.refine_prior,
                       ratios=test.bone_ratio if exact else None)
            rows.append(row("tto", rule, z))
        if "lifter" in cfg.methods:
            model, _ = train_lifter(ft_cfg, sets, "target2d_bmc", limits, progress=False, exact_lengths=exact,
                                    init=base)
            rows.append(row("lifter", rule, predict_depths(model, test)))
    return {"rows": rows, "seconds": round(time.perf_counter() - t0, 1)}


def lambda_study(cfg: RegimeConfig, lambdas: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0), noise_px: float = 1.0,
                 results_root: str | os.PathLike = "results", progress: bool = True) -> Path:
    """Choose the BMC weight on the **source** domain alone: held-out source hands play the
    weak set (their 3D hidden), the lifter is fine-tuned with BMC at each ``lambda`` on their
    2D, and evaluated on other held-out source hands. The rule (fixed before running it): the
    lambda with the lowest mean 3D error, among those whose root-relative depth error is no
    more than 1% worse than without BMC. Writes ``runs/lambda_source_val_<preset>.json`` and
    ``tables/lambda_source_val[_<preset>].md``; returns the table."""
    import torch
    from ..progress import tqdm

    from ..data.synth import DOMAINS
    from ..lifting import predict_depths, evaluate_lifter, keypoint_set, train_lifter
    from ..results import provenance, write_json_atomic, write_text_atomic

    rows = []
    bar = tqdm(total=len(cfg.seeds) * (1 + len(lambdas)), desc="lambda on source validation", disable=not progress)
    for seed in cfg.seeds:
        s = 7919 * (seed + 1) + 555
        g = torch.Generator().manual_seed(s)
        dom = DOMAINS["source"]
        sets = {"source": keypoint_set(dom, cfg.n_train, cfg.image_size, 0.0, s + 1).with_noise(noise_px, g),
                "target": keypoint_set(dom, cfg.n_train, cfg.image_size, 0.0, s + 2).with_noise(noise_px, g),
                "test": keypoint_set(dom, cfg.n_test, cfg.image_size, 0.0, s + 3).with_noise(noise_px, g)}
        lcfg = cfg.lifting(noise_px, seed)
        base, _ = train_lifter(lcfg, sets, "source3d", progress=False)
        m0 = evaluate_lifter(predict_depths(base, sets["test"]), sets["test"])
        rows.append({"seed": seed, "lambda": 0.0, **{k: m0[k] for k in ("depth_mm", "depth_abs_mm", "epe_3d_mm")}})
        bar.update(1)
        limits = fit_rule("source_quantile", sets["source"].xyz.double(), None, cfg)
        for lam in lambdas:
            ft = dataclasses.replace(lcfg, steps=cfg.finetune_steps, lr=cfg.finetune_lr, lambda_bmc=lam)
            model, _ = train_lifter(ft, sets, "target2d_bmc", limits, progress=False, init=base)
            m = evaluate_lifter(predict_depths(model, sets["test"]), sets["test"])
            rows.append({"seed": seed, "lambda": lam, **{k: m[k] for k in ("depth_mm", "depth_abs_mm", "epe_3d_mm")}})
            bar.update(1)
    bar.close()
    import pandas as pd

    df = pd.DataFrame(rows)
    mean = df.groupby("lambda")[["depth_mm", "depth_abs_mm", "epe_3d_mm"]].mean()
    ok = mean[mean["depth_mm"] <= 1.01 * mean.loc[0.0, "depth_mm"]].drop(index=0.0, errors="ignore")
    chosen = float(ok["epe_3d_mm"].idxmin()) if len(ok) else float("nan")
    suffix = "" if cfg.preset == "cpu" else f"_{cfg.preset}"
    out = {"rows": rows, "chosen_lambda": chosen, "rule": "lowest mean epe_3d_mm among lambdas whose depth_mm is "
           "at most 1% above lambda 0 (source validation)", "noise_px": noise_px,
           "provenance": provenance(preset=cfg.preset, config={**cfg.cell_config(), "lambdas": list(lambdas),
                                                               "seeds": list(cfg.seeds)})}
    write_json_atomic(Path(results_root) / "runs" / f"lambda_source_val_{cfg.preset}.json", out)
    lines = [f"# BMC weight chosen on source validation ({cfg.preset})", "",
             f"Lifter fine-tuned with BMC (source-quantile limits) on held-out *source* hands' 2D ({noise_px:g} px noise), "
             f"evaluated on other held-out source hands; mean over seeds {list(cfg.seeds)} (mm).", "",
             "| lambda | depth (mm) | absolute depth (mm) | 3D EPE (mm) |", "|---|---|---|---|"]
    lines += [f"| {lam:g} | {r.depth_mm:.2f} | {r.depth_abs_mm:.2f} | {r.epe_3d_mm:.2f} |" for lam, r in mean.iterrows()]
    lines += ["", f"Rule: {out['rule']}. Chosen: **lambda = {chosen:g}**. Made by `bmc regime --lambda-study` "
              f"(commit {out['provenance']['git_commit']})."]
    return write_text_atomic(Path(results_root) / "tables" / f"lambda_source_val{suffix}.md", "\n".join(lines) + "\n")


def finetune_control(cfg: RegimeConfig, population: str = "continuous", results_root: str | os.PathLike = "results",
                     progress: bool = True) -> Path:
    """The control of the ``lifter`` method: the same fine-tune (steps, learning rate, data)
    *without* BMC, so that the map's lifter gains are not extra training in disguise. Writes
    ``runs/regime_control_<preset>.json`` (depth, absolute depth and 3D error of the source-only
    lifter and of its BMC-free fine-tune, per noise and seed) and returns it."""
    import torch
    from ..progress import tqdm

    from ..lifting import predict_depths, evaluate_lifter, train_lifter
    from ..results import provenance, write_json_atomic

    rows = []
    bar = tqdm(total=len(cfg.seeds) * len(cfg.noise_px), desc="fine-tune control", disable=not progress)
    for seed in cfg.seeds:
        for noise in cfg.noise_px:
            torch.manual_seed(seed)
            sets = cell_sets(population, noise, seed, cfg)
            lcfg = cfg.lifting(noise, seed)
            base, _ = train_lifter(lcfg, sets, "source3d", progress=False)
            ft, _ = train_lifter(dataclasses.replace(lcfg, steps=cfg.finetune_steps, lr=cfg.finetune_lr), sets,
                                 "source3d", progress=False, init=base)
            for name, model in (("none", base), ("finetune_without_bmc", ft)):
                m = evaluate_lifter(predict_depths(model, sets["test"]), sets["test"])
                rows.append({"population": population, "noise_px": noise, "seed": seed, "method": name,
                             **{k: m[k] for k in ("depth_mm", "depth_abs_mm", "epe_3d_mm")}})
            bar.update(1)
    bar.close()
    out = Path(results_root) / "runs" / f"regime_control_{cfg.preset}.json"
    write_json_atomic(out, {"rows": rows, "provenance": provenance(preset=cfg.preset, config=cfg.cell_config(),
                                                                   data={"population": population})})
    return out


def _cell_name(population: str, noise_px: float, seed: int) -> str:
    return f"{population}_noise{noise_px:g}_seed{seed}"


def _worker(args) -> str:
    population, noise, seed, cfg, out_dir, threads = args
    import torch

    from ..results import provenance, write_json_atomic

    torch.set_num_threads(threads)
    res = run_cell(population, noise, seed, cfg)
    path = Path(out_dir) / f"{_cell_name(population, noise, seed)}.json"
    write_json_atomic(path, {"config": cfg.cell_config(), **res,
                             "provenance": provenance(preset=cfg.preset, seed=seed, config=cfg.cell_config(),
                                                      data={"generator": "bmclib.data.synth.sample_keypoints",
                                                            "population": population, "noise_px": noise})})
    return f"{path.name} ({res['seconds']:.0f} s)"


def run_regime_map(cfg: RegimeConfig, results_root: str | os.PathLike = "results", jobs: int = 1,
                   force: bool = False, progress: bool = True) -> Path:
    """Every missing cell of the map (resumable), then the table and the figure; returns the table."""
    from ..progress import tqdm

    out_dir = Path(results_root) / "runs" / f"regime_{cfg.preset}"
    todo = []
    for seed in cfg.seeds:  # seed outermost: a partial map already covers every cell once
        for pop in cfg.populations:
            for noise in cfg.noise_px:
                path = out_dir / f"{_cell_name(pop, noise, seed)}.json"
                if not force and path.is_file():
                    try:
                        if json.loads(path.read_text()).get("config") == cfg.cell_config():
                            continue
                    except json.JSONDecodeError:
                        pass  # a broken part is redone
                todo.append((pop, noise, seed))
    cores = os.cpu_count() or 1
    threads = max(1, cores // max(1, jobs))
    args = [(p, n, s, cfg, out_dir, threads) for p, n, s in todo]
    bar = tqdm(total=len(args), desc=f"regime map ({cfg.preset})", unit="cell", disable=not progress or not args)  # nothing to compute: no bar
    if jobs <= 1 or len(args) <= 1:
        for a in args:
            bar.set_postfix_str(_cell_name(*a[:3]))
            bar.write(f"[regime] {_worker(a)}")
            bar.update(1)
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(jobs) as pool:
            for msg in pool.imap_unordered(_worker, args):
                bar.write(f"[regime] {msg}")
                bar.update(1)
    bar.close()
    table = regime_table(cfg.preset, results_root)
    regime_figure(cfg.preset, results_root)
    return table


def _load_rows(preset: str, results_root) -> tuple[list[dict[str, Any]], list[str]]:
    rows, commits = [], set()
    files = sorted((Path(results_root) / "runs" / f"regime_{preset}").glob("*.json"))
    for f in files:
        data = json.loads(f.read_text())
        rows.extend(data["rows"])
        commits.add(data.get("provenance", {}).get("git_commit", "?"))
    return rows, sorted(commits)


def regime_summary(preset: str, results_root: str | os.PathLike = "results"):
    """One row per (population, noise, method, limits): mean and std over seeds of the depth
    error, and the paired per-seed reductions vs the source-only lifter and vs a flat hand."""
    import pandas as pd

    rows, _ = _load_rows(preset, results_root)
    if not rows:
        raise ValueError(f"no regime-map parts under {Path(results_root) / 'runs' / f'regime_{preset}'}")
    df = pd.DataFrame(rows)
    base = df[df["method"] == "none"].set_index(["population", "noise_px", "seed"])
    out = []
    for (pop, noise, method, rule), g in df[df["method"] != "none"].groupby(["population", "noise_px", "method", "limits"],
                                                                             sort=False):
        b = base.loc[[(pop, noise, s) for s in g["seed"]]]
        red = 100 * (1 - g["depth_mm"].to_numpy() / b["depth_mm"].to_numpy())  # paired per seed
        red_abs = 100 * (1 - g["depth_abs_mm"].to_numpy() / b["depth_abs_mm"].to_numpy())
        red_3d = 100 * (1 - g["epe_3d_mm"].to_numpy() / b["epe_3d_mm"].to_numpy())
        flat = g["depth_flat_mm"].to_numpy()
        sd = lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")  # noqa: E731
        out.append({"population": pop, "noise_px": noise, "method": method, "limits": rule, "seeds": len(g),
                    "depth_mm_none": float(b["depth_mm"].mean()), "depth_mm": float(g["depth_mm"].mean()),
                    "depth_mm_std": sd(g["depth_mm"]), "depth_flat_mm": float(flat.mean()),
                    "reduction_pct": float(red.mean()), "reduction_pct_std": sd(red),
                    "reduction_pct_min": float(red.min()),
                    "abs_depth_reduction_pct": float(red_abs.mean()), "epe_3d_reduction_pct": float(red_3d.mean()),
                    "vs_flat_pct_none": float(np.mean(100 * (b["depth_mm"].to_numpy() / flat - 1))),
                    "vs_flat_pct": float(np.mean(100 * (g["depth_mm"].to_numpy() / flat - 1))),
                    "upper_bound": rule in UPPER_BOUNDS})
    return pd.DataFrame(out)


def regime_table(preset: str, results_root: str | os.PathLike = "results") -> Path:
    """``tables/regime_map[_<preset>].{csv,md}`` from the part files."""
    from ..results import write_text_atomic

    summary = regime_summary(preset, results_root)
    _, commits = _load_rows(preset, results_root)
    suffix = "" if preset == "cpu" else f"_{preset}"
    base = Path(results_root) / "tables" / f"regime_map{suffix}"
    base.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(base.with_suffix(".csv"), summary.to_csv(index=False, float_format="%.4f"))
    lines = [f"# Regime map ({preset}): error reductions by BMC (%, paired per seed against the source-only lifter)", ""]
    noises = sorted(summary["noise_px"].unique())
    head = summary[summary["limits"] == "source_quantile"]
    if len(head):
        lines += ["## Headline: source-quantile limits, mean over seeds", "",
                  "| population | method | error | " + " | ".join(f"{n:g} px" for n in noises) + " |",
                  "|---|---|---|" + "---|" * len(noises)]
        for (pop, method), g in head.groupby(["population", "method"], sort=False):
            for col, label in (("reduction_pct", "root-relative depth"), ("abs_depth_reduction_pct", "absolute depth"),
                               ("epe_3d_reduction_pct", "root-relative 3D")):
                vals = [g[g["noise_px"] == n][col] for n in noises]
                lines.append(f"| {pop} | {method} | {label} | "
                             + " | ".join("" if v.empty else f"{v.iloc[0]:+.1f}" for v in vals) + " |")
        lines += [""]
    lines += ["## Root-relative depth error, every limits rule", "",
              "Rows: limits rule; columns: 2D noise (px at 128 px). Reduction of the root-relative depth error vs the "
              "source-only lifter on the same seed (mean ± std over seeds); *UB* rows are upper bounds no weakly "
              "supervised run has.", ""]
    for (pop, method), g in summary.groupby(["population", "method"], sort=False):
        lines += [f"### {pop}, {method}", "",
                  "| limits | " + " | ".join(f"{n:g} px" for n in noises) + " |",
                  "|---|" + "---|" * len(noises)]
        for rule, r in g.groupby("limits", sort=False):
            cells = []
            for n in noises:
                x = r[r["noise_px"] == n]
                cells.append("" if x.empty else f"{x['reduction_pct'].iloc[0]:+.1f} ± {x['reduction_pct_std'].iloc[0]:.1f}"
                             if not math.isnan(x['reduction_pct_std'].iloc[0]) else f"{x['reduction_pct'].iloc[0]:+.1f} (n = 1)")
            lines.append(f"| {rule}{' (UB)' if rule in UPPER_BOUNDS else ''} | " + " | ".join(cells) + " |")
        base_row = [f"{g[g['noise_px'] == n]['depth_mm_none'].iloc[0]:.2f} / {g[g['noise_px'] == n]['depth_flat_mm'].iloc[0]:.2f}"
                    for n in noises]
        lines += ["| *source-only / flat hand depth (mm)* | " + " | ".join(base_row) + " |", ""]
    lines += ["## Absolute depth error (root and scale included), every limits rule", ""]
    for (pop, method), g in summary.groupby(["population", "method"], sort=False):
        lines += [f"### {pop}, {method}", "", "| limits | " + " | ".join(f"{n:g} px" for n in noises) + " |",
                  "|---|" + "---|" * len(noises)]
        for rule, r in g.groupby("limits", sort=False):
            cells = ["" if r[r["noise_px"] == n].empty else f"{r[r['noise_px'] == n]['abs_depth_reduction_pct'].iloc[0]:+.1f}"
                     for n in noises]
            lines.append(f"| {rule}{' (UB)' if rule in UPPER_BOUNDS else ''} | " + " | ".join(cells) + " |")
        lines += [""]
    lines += [f"Made by `bmc regime --preset {preset}` from `results/runs/regime_{preset}/*.json` "
              f"(commits {', '.join(commits)}). Full columns (absolute depth, 3D EPE, change vs flat) in the CSV."]
    write_text_atomic(base.with_suffix(".md"), "\n".join(lines) + "\n")
    return base.with_suffix(".md")


def regime_figure(preset: str, results_root: str | os.PathLike = "results") -> Path:
    """``figures/regime_map[_<preset>].png``: reduction vs 2D noise, one line per limits rule,
    one column per (population, method); top row the root-relative depth error, bottom row the
    absolute depth error (root and scale included); upper bounds dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = regime_summary(preset, results_root)
    panels = list(summary.groupby(["population", "method"], sort=False))
    rows = (("reduction_pct", "reduction_pct_std", "root-relative depth error\nreduction by BMC (%)"),
            ("abs_depth_reduction_pct", None, "absolute depth error\nreduction by BMC (%)"))
    fig, axes = plt.subplots(2, len(panels), figsize=(3.6 * len(panels), 6.4), sharey="row", squeeze=False)
    colors = dict(zip(LIMIT_RULES, ["#636363", "#9ecae1", "#3182bd", "#31a354", "#e6550d", "#756bb1"]))
    for i, (col, err, label) in enumerate(rows):
        for ax, ((pop, method), g) in zip(axes[i], panels):
            for rule, r in g.groupby("limits", sort=False):
                r = r.sort_values("noise_px")
                ax.errorbar(r["noise_px"], r[col], yerr=r[err].fillna(0) if err else None, capsize=2,
                            color=colors.get(rule), ls="--" if rule in UPPER_BOUNDS else "-", marker="o", ms=3,
                            label=rule + (" (UB)" if rule in UPPER_BOUNDS else ""))
            ax.axhline(0, color="k", lw=0.6)
            ax.set_title(f"{pop}, {method}", fontsize=9)
            if i == 1:
                ax.set_xlabel("2D noise (px at 128 px)")
        axes[i][0].set_ylabel(label)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    suffix = "" if preset == "cpu" else f"_{preset}"
    out = Path(results_root) / "figures" / f"regime_map{suffix}.png"
    from ..results import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def add_cli_arguments(p) -> None:
    """The options of ``bmc regime``."""
    p.add_argument("--preset", default="cpu", choices=sorted(RegimeConfig._PRESETS), help="map size")
    p.add_argument("--results", default="results", help="results root")
    p.add_argument("--jobs", type=int, default=1, help="cells run at once in worker processes")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the preset's, 0 1 2 for cpu)")
    p.add_argument("--force", action="store_true", help="redo finished cells")
    p.add_argument("--table-only", action="store_true", help="rebuild the table and figure from the part files")
    p.add_argument("--lambda-study", action="store_true",
                   help="instead of the map: choose the BMC weight on source validation (lambda_study)")
    p.add_argument("--control", action="store_true",
                   help="instead of the map: the lifter method's fine-tune without BMC (finetune_control)")


def cli_main(a) -> int:
    """``bmc regime`` with parsed options."""
    over = {"seeds": tuple(a.seeds)} if a.seeds else {}
    cfg = RegimeConfig.from_preset(a.preset, **over)
    if a.lambda_study:
        out = lambda_study(cfg, results_root=a.results)
    elif a.control:
        print(f"wrote {finetune_control(cfg, results_root=a.results)}")
        return 0
    elif a.table_only:
        out = regime_table(cfg.preset, a.results)
        regime_figure(cfg.preset, a.results)
    else:
        out = run_regime_map(cfg, a.results, jobs=a.jobs, force=a.force)
    print(Path(out).read_text())
    return 0
