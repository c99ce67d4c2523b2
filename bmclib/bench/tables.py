"""Result tables, rebuilt from the metrics files alone (``results/runs/*/metrics.json``).

Each table is a CSV (mean and std columns) and a Markdown file (``mean ± std`` cells) that
names the files and commits its numbers came from. ``build_all`` regenerates every table
and figure that a results folder can support (notebook 05, ``bmc tables``).

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"run": ["a", "a", "b"], "seed": [0, 1, 0], "depth_mm": [10.0, 12.0, 8.0]})
    >>> summarise(df, ["b", "a"], ["depth_mm"])[["run", "seeds", "depth_mm", "depth_mm_std"]].values.tolist()
    [['b', 1, 8.0, 0.0], ['a', 2, 11.0, 1.4142135623730951]]
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..results import write_text_atomic
from .report import frame_markdown, write_table
from .runs import parse_run_name

__all__ = ["collect", "summarise", "write_table", "synthetic_benchmark_table", "lifting_table", "build_all",
           "true_depth_study", "paired_effects", "frame_markdown", "V2_METRICS",
           "BENCHMARK_METRICS", "LIFTING_METRICS", "refine_study", "REFINE_METRICS", "add_cli_arguments", "cli_main"]

BENCHMARK_METRICS = [("depth_mm", "depth error (mm)"), ("epe_3d_mm", "3D EPE (mm)"), ("epe_2d_px", "2D EPE (px)"),
                     ("pa_mpjpe_mm", "PA-MPJPE (mm)"), ("auc_3d", "AUC 0-50 mm"),
                     ("depth_corr", "depth correlation"), ("depth_spread", "depth spread (pred / true)"),
                     ("implausible_joints", "implausible joints"),
                     ("bmc_pred", "BMC of prediction"), ("bmc_true_depth", "BMC of true depth on predicted 2D")]
V2_METRICS = [("epe_2d_pct_crop", "2D EPE (% of crop)"), ("abs_3d_depth_part_mm", "depth part of the 3D error (mm)"), ("abs_3d_2d_part_mm", "2D part of the 3D error (mm)"),
              ("depth_abs_mm", "absolute depth error (mm)"), ("depth_vs_flat_pct", "depth vs flat hand (%)")]
LIFTING_METRICS = [("depth_mm", "depth error (mm)"), ("epe_3d_mm", "3D EPE (mm)"), ("pa_mpjpe_mm", "PA-MPJPE (mm)"),
                   ("auc_3d", "AUC 0-50 mm")]


def collect(results_root: str | os.PathLike = "results") -> pd.DataFrame:
    """One row per ``runs/<name>/metrics.json``: kind (``benchmark`` / ``lifting``), preset, run,
    seed, commit, the metrics (and ``epe_2d_pct_crop``, the 2D error in % of the run's crop),
    and the file. Folders with other names are ignored."""
    rows = []
    for f in sorted(Path(results_root, "runs").glob("*/metrics.json")):
        m = parse_run_name(f.parent.name)
        if m is None:
            continue
        try:
            data = json.loads(f.read_text())
            metrics, prov = data["metrics"], data.get("provenance", {})
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{f}: not a metrics file ({e})") from e
        row = {**m, "commit": prov.get("git_commit", "?"), "file": str(f),
               **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        size = (prov.get("config") or {}).get("image_size")
        if isinstance(size, int) and "epe_2d_px" in row:  # the 2D error as a share of the crop
            row["epe_2d_pct_crop"] = 100.0 * row["epe_2d_px"] / size
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, order: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean and sample std (0 for one seed) of ``metrics`` per run, runs in ``order``."""
    out = []
    for run in order:
        sub = df[df["run"] == run]
        if sub.empty:
            continue
        row = {"run": run, "seeds": int(len(sub))}
        for k in metrics:
            vals = sub[k].astype(float) if k in sub else pd.Series([np.nan])
            row[k] = float(vals.mean())
            row[k + "_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        out.append(row)
    return pd.DataFrame(out)


def _markdown(summary: pd.DataFrame, metrics: Sequence[tuple[str, str]], extra: Sequence[tuple[str, str]] = ()) -> str:
    head = ["run", "seeds"] + [label for _, label in metrics] + [label for _, label in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = []
        for k, _ in metrics:
            digits = 3 if abs(r[k]) < 1.5 else 2
            # one seed has no spread to show: print the value alone (the seeds column says n = 1)
            cells.append(f"{r[k]:.{digits}f}" + (f" ± {r[k + '_std']:.{digits}f}" if r["seeds"] > 1 else ""))
        cells += [str(r[k]) for k, _ in extra]
        lines.append(f"| {r['run']} | {r['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _source_note(df: pd.DataFrame, pattern: str, made_by: str) -> str:
    commits = ", ".join(sorted(set(df["commit"])))
    return f"Made by `{made_by}` from `{pattern}` (runs at commit(s) {commits})."


def synthetic_benchmark_table(preset: str, results_root: str | os.PathLike = "results", df: pd.DataFrame | None = None,
                              made_by: str = "bmc tables", bench: str | None = None) -> Path:
    """``tables/synthetic_benchmark[_<bench>][_<preset>].{csv,md}`` (no suffix for ``cpu`` and
    benchmark v1) and the figure ``figures/synthetic_benchmark_depth[...].png``."""
    from .runs import RUNS

    df = collect(results_root) if df is None else df
    bench = bench or "v1"
    sub = df[(df["kind"] == "benchmark") & (df["preset"] == preset) & (df["bench"] == bench)] if len(df) else df
    if bench != "v1" and len(sub):
        from .benchmark import DEFAULT_BENCHMARK, load_benchmark

        RUNS = load_benchmark(DEFAULT_BENCHMARK).runs if DEFAULT_BENCHMARK.is_file() else {r: {} for r in sub["run"]}
    if sub.empty:
        raise ValueError(f"no benchmark metrics for preset {preset!r} under {Path(results_root) / 'runs'}")
    metrics = BENCHMARK_METRICS if bench == "v1" else BENCHMARK_METRICS + V2_METRICS
    summary = summarise(sub, list(RUNS), [k for k, _ in metrics])
    base = summary.loc[summary["run"] == "1_source3d", "depth_mm"]
    red = 100 * (1 - summary["depth_mm"] / float(base.iloc[0])) if len(base) else np.nan
    summary["depth_reduction_vs_1_pct"] = red
    summary["depth_reduction"] = [f"{x:.1f}%" if np.isfinite(x) else "n/a" for x in np.broadcast_to(red, len(summary))]
    md = _markdown(summary, metrics, [("depth_reduction", "depth reduction vs (1)")])
    if bench != "v1":  # paired per seed, the oracle gap, and the pre-registered test
        from .benchmark import DEFAULT_BENCHMARK, load_benchmark, verdict

        b = load_benchmark(DEFAULT_BENCHMARK)
        eff = paired_effects(sub, b.test["primary_metric"], flat=b.test.get("flat_metric", "depth_flat_mm"))
        md += (f"\n\nPaired per seed on the pre-registered metric `{b.test['primary_metric']}`:\n\n"
               + frame_markdown(eff) + "\n\n" + verdict(b, sub)["text"])
    flat = sub["depth_flat_mm"].dropna() if "depth_flat_mm" in sub else pd.Series([], dtype=float)
    flat_note = (f"A flat hand (every joint at the root's depth) would score a depth error of "
                 f"**{flat.mean():.2f} mm** on this set. " if len(flat) else "")
    spread = "mean ± sample std over seeds" if (summary["seeds"] > 1).all() else \
        "mean ± sample std over seeds (a run with one seed shows its value alone)"
    md += (f"\n\nPreset `{preset}`; {spread}; evaluated on target-test (full 3D). {flat_note}"
           + _source_note(sub, f"results/runs/{preset}_*/metrics.json", made_by))
    suffix = ("" if bench == "v1" else f"_{bench}") + ("" if preset == "cpu" else f"_{preset}")
    root = Path(results_root)
    out = write_table(summary.drop(columns=["depth_reduction"]), root / "tables" / f"synthetic_benchmark{suffix}", md)
    _depth_figure(sub, summary, preset, root / "figures" / f"synthetic_benchmark_depth{suffix}.png", bench)
    return out


def paired_effects(sub: pd.DataFrame, metric: str, base_run: str = "1_source3d", weak_run: str = "2_target2d",
                   oracle_run: str = "4_target3d_oracle", flat: str = "depth_flat_mm") -> pd.DataFrame:
    """Per run, paired by seed against ``base_run``: the mean (and std) difference of ``metric``,
    the mean reduction (%), the change against a flat hand (%), and the share of the
    ``weak_run`` -> ``oracle_run`` gap recovered (mean over seeds that have all three)."""
    piv = sub.pivot_table(index="seed", columns="run", values=metric)
    flat_v = sub.groupby("seed")[flat].mean() if flat in sub else pd.Series(np.nan, index=piv.index)
    rows = []
    for run in piv.columns:
        if base_run in piv:
            both = piv[[base_run]].assign(run=piv[run]).dropna()  # (the run may be the base itself)
            diff, red = both["run"] - both[base_run], 100 * (1 - both["run"] / both[base_run])
        else:
            both, diff, red = pd.DataFrame(), pd.Series([], dtype=float), pd.Series([], dtype=float)
        vs_flat = 100 * (piv[run].dropna() / flat_v.reindex(piv[run].dropna().index) - 1)
        gap = np.nan
        if weak_run in piv and oracle_run in piv:
            g = piv[list(dict.fromkeys([run, weak_run, oracle_run]))].dropna()  # run may be one of the two
            if len(g):
                gap = float((100 * (g[weak_run] - g[run]) / (g[weak_run] - g[oracle_run])).mean())
        rows.append({"run": run, "seeds paired": len(both), f"{metric} - run 1 (mean)": float(diff.mean()) if len(diff) else np.nan,
                     "(std)": float(diff.std(ddof=1)) if len(diff) > 1 else np.nan,
                     "reduction vs run 1 (%)": float(red.mean()) if len(red) else np.nan,
                     "vs flat hand (%)": float(vs_flat.mean()) if len(vs_flat) else np.nan,
                     "oracle gap recovered (%)": gap})
    return pd.DataFrame(rows)


def _depth_figure(sub: pd.DataFrame, summary: pd.DataFrame, preset: str, path: Path, bench: str | None = None) -> None:
    import matplotlib.pyplot as plt

    from ..viz.static import save

    fig, ax = plt.subplots(figsize=(7, 3.5))
    cap = 2.0 * float(np.nanmedian(summary["depth_mm"]))  # a diverged run must not flatten the others
    for i, run in enumerate(summary["run"]):
        vals = sub.loc[sub["run"] == run, "depth_mm"].to_numpy(float)
        if vals.mean() > cap:
            ax.bar(i, cap, color="#fcbba1", hatch="//")
            ax.text(i, cap, f"{vals.mean():,.0f}", ha="center", va="bottom", fontsize=7, color="#a50f15")
            continue
        ax.bar(i, vals.mean(), color="#9ecae1")
        ax.scatter(np.full(len(vals), i), vals, color="#08519c", zorder=3, s=14)
    ax.set_ylim(0, cap * 1.08)
    if "depth_flat_mm" in sub and sub["depth_flat_mm"].notna().any():
        ax.axhline(float(sub["depth_flat_mm"].mean()), color="#d62728", ls="--", lw=1,
                   label="a flat hand (every joint at the root's depth)")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xticks(range(len(summary)), list(summary["run"]), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("root-relative depth error (mm)")
    ax.set_title(f"Synthetic benchmark {bench or 'v1'}, preset {preset}: depth error per run (dots: seeds)", fontsize=9)
    fig.tight_layout()
    save(fig, path, dpi=120)


def lifting_table(preset: str, results_root: str | os.PathLike = "results", df: pd.DataFrame | None = None,
                  made_by: str = "bmc tables") -> Path:
    """``tables/lifting_prior[_<preset>].{csv,md}``: notebook 03's 2D-to-3D lifting runs."""
    from ..lifting import RUNS

    df = collect(results_root) if df is None else df
    sub = df[(df["kind"] == "lifting") & (df["preset"] == preset)] if len(df) else df
    if sub.empty:
        raise ValueError(f"no lifting metrics for preset {preset!r} under {Path(results_root) / 'runs'}")
    summary = summarise(sub, list(RUNS), [k for k, _ in LIFTING_METRICS])
    md = _markdown(summary, LIFTING_METRICS)
    md += (f"\n\nPreset `{preset}`; 2D keypoints (with pixel noise) lifted to 3D by an MLP; evaluated on "
           "target-test. " + _source_note(sub, f"results/runs/lifting_{preset}_*/metrics.json", made_by))
    suffix = "" if preset == "cpu" else f"_{preset}"
    return write_table(summary, Path(results_root) / "tables" / f"lifting_prior{suffix}", md)


def true_depth_study(preset: str, results_root: str | os.PathLike = "results", df: pd.DataFrame | None = None,
                     sigmas: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0),
                     made_by: str = "bmc tables") -> Path:
    """Why BMC can pull depth from the truth: ``tables/bmc_true_depth[_<preset>].{csv,md}`` (the
    BMC of the true depths seen through 2D with Gaussian noise of each ``sigma``, on the
    benchmark's evaluation set and limits) and ``figures/bmc_true_depth[_<preset>].png`` (that
    curve, with each run's 2D error against the BMC of the true depth on its 2D and the BMC of
    its own prediction). Needs the evaluation cache named in the runs' provenance."""
    from ..data.cache import PreparedCache
    from ..evaluate import true_depth_bmc_curve
    from ..limits import BMCLimits
    from ..viz.static import save, true_depth_figure

    df = collect(results_root) if df is None else df
    sub = df[(df["kind"] == "benchmark") & (df["preset"] == preset)] if len(df) else df
    if sub.empty:
        raise ValueError(f"no benchmark metrics for preset {preset!r} under {Path(results_root) / 'runs'}")
    # the first run whose evaluation data and limits are here (runs made on other machines or
    # checkouts name paths that need not exist on this one), the newest benchmark first; then only
    # that benchmark's runs are drawn against its curve
    missing = []
    version = sub["bench"].str.extract(r"^v(\d+)", expand=False).astype(float).fillna(1)
    sub = sub.assign(_v=-version).sort_values("_v", kind="stable").drop(columns="_v")
    for file in sub["file"]:
        prov = json.loads(Path(file).read_text())["provenance"]
        cache_path, limits_path = prov["data"]["eval_cache"], prov["config"]["limits"]
        gone = [f"{path} ({what})" for what, path in (("evaluation cache", Path(cache_path) / "meta.json"),
                                                       ("limits", Path(limits_path))) if not path.is_file()]
        if not gone:
            break
        missing.append(f"{file}: " + ", ".join(gone))
    else:
        raise FileNotFoundError(f"no run's evaluation data is here; make the data first (bmc experiment --preset "
                                f"{preset}, or make reproduce). Missing: " + "; ".join(missing[:3]))
    bench = sub.loc[sub["file"] == file, "bench"].iloc[0]
    sub = sub[sub["bench"] == bench]
    ann = PreparedCache(cache_path).annotations
    limits = BMCLimits.load(limits_path)
    curve = pd.DataFrame(true_depth_bmc_curve(ann["uv"].astype(np.float64), ann["xyz"].astype(np.float64),
                                              ann["K"].astype(np.float64), limits, sigmas))
    cols = [("sigma_px", "2D noise sigma (px)"), ("epe_2d_px", "2D error (px)"), ("bmc_total", "BMC"),
            ("bmc_bl", "BL"), ("bmc_rb", "RB"), ("bmc_a", "angles")]
    md = ["| " + " | ".join(label for _, label in cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(f"{r[k]:.4g}" for k, _ in cols) + " |" for _, r in curve.iterrows()]
    md = "\n".join(md) + (f"\n\nPreset `{preset}`: the mean BMC (lambdas 1, limits `{limits_path}`) of the *true* "
                          f"target-test poses placed on camera rays through 2D keypoints with Gaussian noise, "
                          f"{len(ann['uv'])} poses of `{cache_path}`. " + _source_note(
                              sub, f"results/runs/{preset}_{'' if bench == 'v1' else bench + '_'}*/metrics.json", made_by))
    suffix = ("" if bench == "v1" else f"_{bench}") + ("" if preset == "cpu" else f"_{preset}")
    root = Path(results_root)
    out = write_table(curve, root / "tables" / f"bmc_true_depth{suffix}", md)
    runs = summarise(sub, list(dict.fromkeys(sub["run"])), ["epe_2d_px", "bmc_pred", "bmc_true_depth"])
    save(true_depth_figure(curve, runs, title=f"preset {preset}: the BMC of the right answer, through imperfect 2D"),
         root / "figures" / f"bmc_true_depth{suffix}.png", dpi=120)
    return out


def build_all(results_root: str | os.PathLike = "results", made_by: str = "bmc tables") -> list[Path]:
    """Every table (and its figure) the metrics under ``results_root/runs`` support."""
    from .regime import regime_figure, regime_table

    df = collect(results_root)
    out = []
    if not df.empty:
        for (kind, preset, bench), _ in df.groupby(["kind", "preset", "bench"]):
            if kind == "benchmark" and "-" in bench:  # a level of a benchmark with a validated test (v3)
                from .checkout import find_checkout
                from .verdict import verdict_table

                name, level = bench.split("-", 1)
                here = [Path(results_root) / f"benchmark_{name}.yaml"]
                if find_checkout() is not None:
                    here.append(find_checkout() / "results" / f"benchmark_{name}.yaml")
                spec = next((f for f in here if f.is_file()), None)
                if spec is None:
                    raise FileNotFoundError(f"runs of benchmark {bench} under {results_root}, but no "
                                            f"benchmark_{name}.yaml in {results_root} or the checkout's results/")
                out.append(verdict_table(spec, level, results_root, preset))
            elif kind == "benchmark":
                out.append(synthetic_benchmark_table(preset, results_root, df, made_by, bench=bench))
            else:
                out.append(lifting_table(preset, results_root, df, made_by))
    for folder in sorted(Path(results_root, "runs").glob("regime_*")):  # the regime maps (bmc regime)
        preset = folder.name[len("regime_"):]
        if any(folder.glob("*.json")):
            out.append(regime_table(preset, results_root))
            regime_figure(preset, results_root)
    return out


REFINE_METRICS = [("depth_norm_mm", "normalised depth (mm)"), ("epe_3d_mm", "3D EPE (mm)"), ("pa_mpjpe_mm", "PA-MPJPE (mm)"),
                  ("depth_mm", "depth error (mm)"),
                  ("abs_3d_depth_part_mm", "depth part of the 3D error (mm)"), ("depth_abs_mm", "absolute depth error (mm)"),
                  ("bmc_pred", "BMC of prediction"), ("implausible_joints", "implausible joints")]


def refine_study(preset: str, runs: Sequence[str], seeds: Sequence[int], results_root: str | os.PathLike = "results",
                 bench: str = "v2", steps: int = 200, made_by: str = "bmc tables --refine") -> Path:
    """``bmc refine`` measured on target-test: each run's predictions (``predictions.npz``) before and
    after test-time refinement with the run's own limits and the evaluation cache's K, paired per
    seed. ``tables/refine_<bench>_<preset>.{csv,md}``."""
    from ..data.cache import PreparedCache
    from ..evaluate import evaluate_arrays
    from ..refine import refine_predictions
    from .runs import run_name
    from ..limits import BMCLimits
    from ..predictions import read_predictions
    from ..results import provenance

    rows = []
    for run in runs:
        for seed in seeds:
            name = run_name(preset, run, seed, None if bench == "v1" else bench)
            d = Path(results_root) / "runs" / name
            if not (d / "predictions.npz").is_file():
                continue
            prov = json.loads((d / "metrics.json").read_text())["provenance"]
            cache = PreparedCache(prov["data"]["eval_cache"])
            limits = BMCLimits.load(prov["config"]["limits"])
            saved = read_predictions(d / "predictions.npz")
            xyz, uv = saved["xyz"], saved["uv"]
            a = cache.annotations
            gt, K = a["xyz"].astype(np.float64), a["K"].astype(np.float64)
            # a hand predicted (partly) behind the camera has no camera rays to refine along: it stays as
            # predicted, in both 'after' stages, and is counted (the scores stay over every image)
            ok = (np.asarray(xyz)[..., 2] > 0).all(axis=1)
            stages = [("before", xyz)]
            for root in ("prediction", "closed_form"):
                after = np.array(xyz, dtype=np.float64)
                if ok.any():
                    after[ok] = refine_predictions(xyz[ok], K[ok], limits, steps=steps, root=root).numpy()
                stages.append((f"after ({root} root)", after))
            for stage, pred in stages:
                m = evaluate_arrays(pred, gt, uv, a["uv"], limits, K)
                rows.append({"run": run, "seed": seed, "stage": stage, **{k: m[k] for k, _ in REFINE_METRICS},
                             "images": len(ok), "unrefined": int((~ok).sum())})
    if not rows:
        raise ValueError(f"no predictions of runs {list(runs)} (preset {preset!r}) under {Path(results_root) / 'runs'}")
    df = pd.DataFrame(rows)
    keys = [k for k, _ in REFINE_METRICS]
    mean = df.groupby(["run", "stage"], sort=False)[keys].mean().reset_index()
    n = df.groupby("run", sort=False)["seed"].nunique()
    mean.insert(1, "seeds", mean["run"].map(n))
    mean.columns = ["run", "seeds", "stage"] + [label for _, label in REFINE_METRICS]
    behind = df[df.stage == "before"].groupby("run", sort=False)[["unrefined", "images"]].sum()
    stem = Path(results_root) / "tables" / f"refine_{bench}_{preset}"
    prov = provenance(made_by=made_by, preset=preset, steps=steps)
    md = ("# Test-time refinement of the benchmark's predictions (`bmc refine`)\n\n"
          + frame_markdown(mean) + "\n\n"
          f"Each run's target-test predictions, before and after {steps} steps of `refine.refine_predictions` "
          "(every joint on its own camera ray: the 2D is unchanged) with the run's limits, the refined hand placed "
          "at the model's own root depth (`bmc refine`'s default) or at the closed-form root of the refined pose; "
          "mean over seeds. "
          + ("" if not behind["unrefined"].any() else "Predictions with a joint behind the camera (z <= 0) have no "
             "rays to refine along and are scored as predicted in every stage: " + ", ".join(
                 f"run {r}: {b.unrefined} of {b.images} images over {n[r]} seeds"
                 for r, b in behind.iterrows() if b.unrefined) + ". ")
          + f"Made by `{made_by}` at commit {prov['git_commit']}, {prov['time']}.")
    write_text_atomic(stem.with_suffix(".csv"), df.to_csv(index=False, float_format="%.6g"))
    return write_text_atomic(stem.with_suffix(".md"), md + "\n")


def add_cli_arguments(p) -> None:
    """The options of ``bmc tables``."""
    p.add_argument("--results", default="results", help="results root (reads runs/*/metrics.json)")
    p.add_argument("--refine", nargs="+", metavar="RUN",
                   help="only measure bmc refine on these runs' target-test predictions (of --bench); "
                        "without it every other table is rebuilt")
    p.add_argument("--bench", default="v2", help="the benchmark part of the --refine runs' names (v2; v3-glove: a level)")
    p.add_argument("--preset", default="cpu", help="preset of the --refine runs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the --refine runs")


def cli_main(a) -> int:
    """``bmc tables`` with parsed options: every table from the runs' metrics files, or with ``--refine``
    only the refine study (the other tables would change in their Made-by lines alone)."""
    if a.refine:
        print(f"wrote {refine_study(a.preset, a.refine, a.seeds, a.results, bench=a.bench)}")
        return 0
    for path in build_all(a.results):
        print(f"wrote {path}")
    return 0
