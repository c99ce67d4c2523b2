"""A pre-registered test with a validated metric (benchmark v3): its table, its verdict, its figure.

A benchmark file whose ``test`` names a ``metric`` and ``conditions`` (``results/benchmark_v3.yaml``)
is judged here, from the runs' saved predictions on target-test (``results/runs/<run>/predictions.npz``)
scored per image (:func:`bmclib.evaluate.per_image_metrics`). The test compares ``test.bmc_run``
with ``test.base_run`` on ``test.metric``, paired over the images and the seeds ``test.seeds``, with
the conditions of :data:`bmclib.bench.stats.CONDITIONS` (the ones the controls validated) and
their intervals (the wider of an image bootstrap and a t-interval over seeds). The verdict is
``passes`` or ``fails`` only with every pre-registered seed present; before that it is
``incomplete`` and the interim numbers are shown as such.

``bmc verdict --benchmark results/benchmark_v3.yaml --level glove`` writes
``tables/benchmark_<name>-<level>[_<preset>].{csv,md,json}`` and ``figures/benchmark_<name>-<level>[_<preset>].png``
(no preset suffix for ``cpu``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["REPORTED", "level_runs", "judge", "verdict_table", "image_regime_map", "add_cli_arguments", "cli_main"]

#: the metrics reported beside the test's (mm, and the 2D error in px)
REPORTED = ("depth_norm_mm", "depth_mm", "root_depth_mm", "pa_mpjpe_mm", "epe_3d_mm", "epe_2d_px")


def level_runs(bench, level: str, results_root: str | Path = "results", preset: str = "cpu",
               seeds=None, strict: bool = True) -> tuple[dict[str, dict[int, dict[str, np.ndarray]]], dict[str, Any]]:
    """Per-image metrics of every run of ``bench`` at ``level`` and seed that has predictions:
    ``{run: {seed: {metric: (images,)}}}``, with the flat hand on each run's own 2D as
    ``flat_on:<run>``; and what was read (the labels' cache and sha256, the runs' commits). A run
    trained with other settings than the frozen file's and ``preset``'s (e.g. fewer steps) raises
    ``ValueError`` (``strict``) or is listed under ``"off_settings"``."""
    from .controls import load_run_predictions
    from .runs import run_name
    from .scores import SCORES_FILE, read_scores, score_arrays

    name = bench.run_bench_name(level)
    seeds = sorted(set(bench.test.get("seeds", [])) | set(bench.test.get("report_seeds", []))) if seeds is None \
        else list(seeds)
    pattern = str(Path(results_root) / "runs" / run_name(preset, "{run}", 0, name).replace("seed0", "seed{seed}"))
    found = {run: got for run in bench.runs if (got := load_run_predictions(pattern, run, seeds))}
    if not found:
        raise FileNotFoundError(f"no predictions of benchmark {bench.name} at level {level!r} under "
                                f"{Path(results_root) / 'runs'}/{run_name(preset, '*', 0, name).replace('seed0', 'seed*')}")
    from ..config import LEGACY_DEFAULTS
    from ..train import preset as make_preset

    base_cfg = make_preset(preset)
    frozen = {**bench.train_overrides(base_cfg.batch_size, base_cfg.steps), "steps": base_cfg.steps}
    off_settings = []
    for run, by_seed in found.items():  # the runs judged must be the registered runs, not a shortened or edited one
        spec = {k: v for k, v in bench.runs[run].items() if k in ("use_bmc", "bmc_terms")}
        for s, r in by_seed.items():
            cfg = {**LEGACY_DEFAULTS, **r["prov"].get("config", {})}  # a field a run predates: its old value
            off = {k: (cfg.get(k), v) for k, v in {**frozen, **spec}.items() if cfg.get(k) != v}
            if off:
                why = (f"{run} seed {s}: trained with other settings than {bench.path} and preset {preset!r} fix: "
                       + ", ".join(f"{k}={a!r} (frozen: {b!r})" for k, (a, b) in off.items()))
                if strict:
                    raise ValueError(why)
                off_settings.append(why)
    any_run = next(iter(next(iter(found.values())).values()))
    data = any_run["prov"]["data"]
    # each run's per-image scores as it committed them (scores.npz: scored once, where its labels were);
    # only a run without them is scored here, from the evaluation cache its metrics file names
    scored: dict[tuple[str, int], dict[str, dict[str, np.ndarray]]] = {}
    metas = []
    for run, by_seed in found.items():
        for s, r in by_seed.items():
            d = r["dir"]
            if (d / SCORES_FILE).is_file():
                scored[run, s], meta = read_scores(d, r["prov"], r)
                metas.append(meta)
    unscored = [(run, s) for run, by_seed in found.items() for s in by_seed if (run, s) not in scored]
    gt_xyz = gt_uv = K = src_xyz = None
    if unscored:
        from ..data.cache import PreparedCache

        try:
            ev, src = PreparedCache(data["eval_cache"]), PreparedCache(data["source"])
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{e}; it is needed to score {len(unscored)} run(s) without {SCORES_FILE} (first: {unscored[0][0]} "
                f"seed {unscored[0][1]}): make that level's data, or run `bmc scores` where it is") from None
        sha, image_size = ev.meta["annotations_sha256"], int(ev.size)
        gt_xyz, gt_uv, K = (ev.annotations[k].astype(np.float64) for k in ("xyz", "uv", "K"))
        images = int(len(gt_xyz))
        src_xyz = src.annotations["xyz"][src.annotations["has_3d"]].astype(np.float64)
    else:
        sha, images, image_size = metas[0]["eval_sha256"], int(metas[0]["images"]), int(metas[0]["image_size"])
    per: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    commits = set()
    for run, by_seed in found.items():
        for s, r in by_seed.items():
            if r["prov"]["data"].get("eval_sha256") != sha:
                raise ValueError(f"{run} seed {s}: evaluated on other labels than {data['eval_cache']} "
                                 f"({str(r['prov']['data'].get('eval_sha256'))[:12]} vs {sha[:12]})")
            commits.add(r["prov"].get("git_commit", "?"))
            if len(r["xyz"]) != images:
                raise ValueError(f"{r['dir'] / 'predictions.npz'}: {len(r['xyz'])} poses for the {images} target-test "
                                 f"images of {data['eval_cache']}")
            if (run, s) in scored:
                got = scored[run, s]
            else:
                got = score_arrays(r["xyz"], r["uv"], gt_xyz, gt_uv, K, src_xyz)
            if len(got["run"]["depth_norm_mm"]) != images:
                raise ValueError(f"{run} seed {s}: {len(got['run']['depth_norm_mm'])} scored images, the labels "
                                 f"have {images}")
            per.setdefault(run, {})[s] = got["run"]
            per.setdefault(f"flat_on:{run}", {})[s] = got["flat_on"]
    return per, {"eval_cache": data["eval_cache"], "eval_sha256": sha, "source_cache": data["source"],
                 "images": images, "commits": sorted(commits), "image_size": image_size,
                 "off_settings": off_settings, "scored_here": len(unscored)}


def _stack(per, run: str, seeds, metric: str) -> np.ndarray:
    return np.stack([per[run][s][metric] for s in seeds])


def judge(bench, per, n_boot: int = 2000, reported_at: str | None = None) -> dict[str, Any]:
    """The pre-registered test on ``per`` (:func:`level_runs`): each condition's value, interval and
    outcome, on the registered seeds that every run of the test has; ``verdict`` is ``passes`` /
    ``fails`` with all of them, else ``incomplete``.

    ``reported_at``: a level other than the test's (the skin level of v3). The same comparison is
    made there on the benchmark's ``report_seeds`` and reported, never tested: ``verdict`` is
    ``reported`` and the conditions read "would pass" / "would fail"."""
    from .stats import CONDITIONS, gap_share, paired_reduction

    t = bench.test
    metric, base, bmc, oracle = t["metric"], t["base_run"], t["bmc_run"], t["oracle_run"]
    if reported_at and "report_seeds" not in t:
        raise ValueError(f"{bench.path}: test has no report_seeds: the seeds on which a level other than the "
                         f"test's ({t.get('level', bench.levels[0])}) is reported, such as {reported_at!r}")
    registered = list(t["report_seeds"] if reported_at else t["seeds"])
    have = [s for s in registered if all(s in per.get(r, {}) for r in (base, bmc, oracle))]
    out: dict[str, Any] = {"metric": metric, "base_run": base, "bmc_run": bmc, "oracle_run": oracle,
                           "seeds_registered": registered, "seeds": have, "conditions": {}}
    which = "report" if reported_at else "pre-registered"
    if reported_at:
        out["reported_at"] = reported_at
    if len(have) < 2:
        out["verdict"] = "reported" if reported_at else "incomplete"
        out["sentence"] = ((f"Reported, not tested (the test is at the {t.get('level', bench.levels[0])} level): " if reported_at
                            else "Incomplete: ") +
                           f"{len(have)} of the {len(registered)} {which} seeds have runs "
                           f"{base}, {bmc} and {oracle}; " + ("the comparison needs at least 2." if reported_at
                                                            else "the test needs them all."))
        return out
    x, b, o = (_stack(per, r, have, metric) for r in (bmc, base, oracle))
    flat = _stack(per, f"flat_on:{bmc}", have, metric)
    red = paired_reduction(x, b, n_boot)
    gap = gap_share(x, b, o, n_boot)
    out.update({"base_mean": float(b.mean()), "bmc_mean": float(x.mean()), "oracle_mean": float(o.mean()),
                "reduction": red, "gap_share": gap, "flat_on_bmc_mean": float(flat.mean())})
    for cond in t["conditions"]:
        sentence, test, _against = CONDITIONS[cond]
        out["conditions"][cond] = {"sentence": sentence, "passed": bool(test(x, b, flat, o, n_boot=n_boot))}
    passed = all(c["passed"] for c in out["conditions"].values())
    complete = len(have) == len(registered)
    out["verdict"] = "reported" if reported_at else ("passes" if passed else "fails") if complete else "incomplete"
    yes, no = {(True, False): ("pass", "fail"), (False, False): ("met so far", "not met so far"),
               (True, True): ("would pass", "would fail"),
               (False, True): ("would pass so far", "would fail so far")}[(complete, bool(reported_at))]
    conds = "; ".join(f"{k}: {yes if v['passed'] else no}" for k, v in out["conditions"].items())
    what = (f"run {bmc} {x.mean():.2f} mm vs run {base} {b.mean():.2f} mm on `{metric}` (oracle {o.mean():.2f}): "
            f"paired reduction {100 * red['reduction']:.1f}% (95% interval {100 * red['lo']:.1f} to "
            f"{100 * red['hi']:.1f}%), share of the gap to the oracle closed {100 * gap['share']:.0f}% "
            f"({100 * gap['lo']:.0f} to {100 * gap['hi']:.0f}%); {conds}")
    if gap["undefined_seeds"] or gap["undefined_resamples"] > 0:  # the gap share's interval left these out
        what += (f" (the oracle was not better than run {base} on {gap['undefined_seeds']} seed(s) and in "
                 f"{100 * gap['undefined_resamples']:.1f}% of the resamples: the gap share is undefined there)")
    if reported_at:
        out["sentence"] = (f"Reported, not tested (the test is at the {t.get('level', bench.levels[0])} level; "
                           + (f"{len(have)} seeds" if complete else
                              f"{len(have)} of {len(registered)} report seeds, interim numbers")
                           + f"): {what}; the test's conditions are applied here only to read them.")
    elif complete:
        out["sentence"] = f"**The pre-registered test {out['verdict']}** ({len(have)} seeds): {what}."
    else:
        out["sentence"] = (f"**Incomplete** ({len(have)} of {len(registered)} pre-registered seeds; interim numbers, "
                           f"not a verdict): {what}.")
    return out


def verdict_table(benchmark: str | Path, level: str | None = None, results_root: str | Path = "results",
                  preset: str = "cpu", n_boot: int = 2000, strict: bool = True) -> Path:
    """Score the runs of ``benchmark`` at ``level`` (default: the test's), judge the test there (at
    another level the same comparison is reported, not tested), and write the table, its JSON and
    the figure. Returns the Markdown table's path."""
    import pandas as pd

    from ..results import provenance, write_text_atomic
    from .benchmark import load_benchmark
    from .stats import paired_reduction
    from .report import frame_markdown, write_table

    bench = load_benchmark(benchmark)
    t = bench.test
    if "metric" not in t:
        raise ValueError(f"{bench.path}: test has no metric: not a benchmark with a validated test (v3 and later)")
    level = level or t.get("level") or bench.levels[0]
    tested = level == t.get("level", bench.levels[0])
    # a reported level: its table and comparison on the report seeds only (judge names a missing list)
    per, read = level_runs(bench, level, results_root, preset, strict=strict,
                           seeds=None if tested else t.get("report_seeds"))
    res = judge(bench, per, n_boot, reported_at=None if tested else level)
    if read["off_settings"]:  # not strict: a smoke run or a shortened one, reported, never a test
        res["verdict"] = "not tested"
        res["sentence"] = ("**Not the registered runs** (" + "; ".join(read["off_settings"][:2])
                           + (" ..." if len(read["off_settings"]) > 2 else "") + "): numbers reported, not a test. "
                           + res["sentence"].split(": ", 1)[-1])
    base = t["base_run"]
    rows = []
    for run in bench.runs:
        if run not in per:
            continue
        seeds = sorted(per[run])
        paired = [s for s in seeds if s in per.get(base, {})]
        row: dict[str, Any] = {"run": run, "seeds": " ".join(map(str, seeds))}
        for m in REPORTED:
            row[m] = float(np.mean([per[run][s][m].mean() for s in seeds]))
        for m in ("depth_norm_mm", "pa_mpjpe_mm"):
            if run != base and len(paired) >= 1:
                r = paired_reduction(_stack(per, run, paired, m), _stack(per, base, paired, m), n_boot)
                row[f"{m}_vs_base_pct"] = f"{100 * r['reduction']:+.1f} ({100 * r['lo']:+.1f}, {100 * r['hi']:+.1f})"
            else:
                row[f"{m}_vs_base_pct"] = ""
        row["2d_pct_of_crop"] = 100 * row["epe_2d_px"] / read["image_size"]
        rows.append(row)
    table = pd.DataFrame(rows)
    name = f"{bench.name}-{level}" + ("" if preset == "cpu" else f"_{preset}")
    stem = Path(results_root) / "tables" / f"benchmark_{name}"
    prov = provenance(made_by="bmc verdict", benchmark=str(bench.path), level=level, **read)
    fig = _figure(per, bench, res, Path(results_root) / "figures" / f"benchmark_{name}.png", level)
    cols = {"run": "run", "seeds": "seeds", "depth_norm_mm": "normalised depth (mm)", "root_depth_mm": "distance (mm)",
            "pa_mpjpe_mm": "PA-MPJPE (mm)", "epe_2d_px": "2D (px)", "2d_pct_of_crop": "2D (% of crop)",
            "depth_norm_mm_vs_base_pct": f"normalised depth vs {base} (%, 95% int.)",
            "pa_mpjpe_mm_vs_base_pct": f"PA-MPJPE vs {base} (%, 95% int.)"}
    shown = table[[c for c in cols if c in table]].rename(columns=cols)
    what = "the pre-registered test" if tested else "reported beside the test, not tested"
    md = (f"# Benchmark {bench.name}, {level} level, preset {preset}: {what}\n\n{res['sentence']}\n\n"
          f"Test (frozen in `{bench.path}`): run `{t['bmc_run']}` against `{base}` on `{t['metric']}`, conditions "
          f"{', '.join(f'`{c}`' for c in t['conditions'])}, seeds {t['seeds']}"
          + ("" if tested else f", at the {t.get('level', bench.levels[0])} level; here the same comparison on the "
             f"report seeds {res['seeds_registered']}") + ". Positive reduction: BMC better. "
          "Intervals: the wider of an image bootstrap and a t-interval over seeds.\n\n"
          + frame_markdown(shown) + "\n\n*Normalised depth*: the mean error of the 20 joints' root-relative depths after "
          "the predicted pose is scaled so that its reference bone has the true length (the test's metric). *Distance*: "
          "the error of the hand's root depth. The CSV beside this table has every metric (root-relative depth, 3D)."
          + (f"\n\n![{name}](../figures/{fig.name})" if fig.is_file() else "") + "\n\n"
          f"{read['images']} target-test images, labels `{read['eval_cache']}` (sha256 {read['eval_sha256'][:12]}); "
          f"runs trained at commit(s) {', '.join(read['commits'])}. Made by `bmc verdict --benchmark {bench.path} "
          f"--level {level}` at commit {prov['git_commit']}, {prov['time']}.")
    path = write_table(table, stem, md)
    write_text_atomic(stem.with_suffix(".json"), json.dumps({"provenance": prov, "verdict": res, "rows": rows},
                                                            indent=1, default=float))
    return path


def _figure(per, bench, res, path: Path, level: str) -> Path:
    """Per seed, the test's metric for each run of the test (lines join a seed's runs)."""
    from ..viz.static import pyplot, save

    plt = pyplot()
    t = bench.test
    metric = t["metric"]
    source_only = [r for r, spec in bench.runs.items() if spec.get("weak") is None]  # no weak set: the floor
    order = [r for r in (*source_only, t["base_run"], t["bmc_run"], t["oracle_run"]) if r in per]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if not order:  # none of the test's runs at this level yet: no figure to draw
        return path
    seeds = sorted(set.union(*(set(per[r]) for r in order)))
    for s in seeds:
        xs = [i for i, r in enumerate(order) if s in per[r]]
        ax.plot(xs, [per[order[i]][s][metric].mean() for i in xs], "-o", color="0.6", lw=0.8, ms=3, zorder=1)
    for i, r in enumerate(order):
        ax.scatter([i], [np.mean([per[r][s][metric].mean() for s in per[r]])], color="C3", s=40, zorder=2,
                   label="mean over seeds" if i == 0 else None)
    ax.set_xticks(range(len(order)), [r.replace("_", " ", 1) for r in order])
    ax.set_ylabel(f"{metric.replace('_mm', '')} error (mm)")
    ax.set_title(f"{bench.name}, {level} level: {res['verdict']}", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save(fig, path)


def add_cli_arguments(p) -> None:
    p.add_argument("--benchmark", default="results/benchmark_v3.yaml", help="a benchmark file with a test metric")
    p.add_argument("--level", help="the data level (default: the test's)")
    p.add_argument("--results", default="results", help="where the runs' predictions are and the table goes")
    p.add_argument("--preset", default="cpu", help="the runs' preset (their names say it)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap samples")
    p.add_argument("--map", action="store_true",
                   help="also the image-level regime map over every level with runs (tables/regime_map_images.md)")


def cli_main(a) -> int:
    if a.bootstrap < 1:
        raise ValueError(f"--bootstrap: expected an integer >= 1 (resamples of the images), got {a.bootstrap}")
    path = verdict_table(a.benchmark, a.level, a.results, a.preset, a.bootstrap)
    print(Path(path).read_text())
    if a.map:
        print(Path(image_regime_map(a.benchmark, a.results, a.preset)).read_text())
    return 0


#: the keypoint map's mean 2D error per unit of its per-coordinate Gaussian noise: E|N(0, s^2 I_2)| = s sqrt(pi / 2)
RAYLEIGH_MEAN = float(np.sqrt(np.pi / 2))


def _reduction_pct(x: np.ndarray, base: np.ndarray) -> float:
    """``100 (1 - mean(x) / mean(base))``; NaN where the base has no error."""
    b = float(base.mean())
    return 100 * (1 - float(x.mean()) / b) if b > 0 else float("nan")


def image_regime_map(benchmark: str | Path, results_root: str | Path = "results", preset: str = "cpu",
                     keypoint_map: str | Path | None = None, population: str = "20_hands",
                     rule: str = "source_quantile") -> Path:
    """BMC's paired effect (run ``bmc_run`` against ``base_run``, per seed) on the test's metric and on
    PA-MPJPE, against the no-BMC network's measured 2D error in % of the crop, one point per level
    and seed; with the keypoint-level map (``tables/regime_map.csv``, :mod:`bmclib.bench.regime`:
    the lifter trained with BMC on the target's noisy 2D, ``population`` and limits ``rule``; its
    noise is per-coordinate Gaussian, drawn at its mean 2D error) on the same axes. Writes
    ``tables/regime_map_images.{csv,md}`` and ``figures/regime_map_images.png``."""
    import pandas as pd

    from ..results import provenance
    from ..viz.static import pyplot, save
    from .benchmark import load_benchmark
    from .regime import RegimeConfig
    from .report import frame_markdown, write_table

    bench = load_benchmark(benchmark)
    t = bench.test
    base, bmc, metric = t["base_run"], t["bmc_run"], t["metric"]
    rows, sizes = [], set()
    for level in bench.levels:
        try:
            per, read = level_runs(bench, level, results_root, preset)
        except FileNotFoundError:
            continue
        sizes.add(read["image_size"])
        for s in sorted(set(per.get(base, {})) & set(per.get(bmc, {}))):
            b, x = per[base][s], per[bmc][s]
            rows.append({"level": level, "seed": s, "base_2d_px": float(b["epe_2d_px"].mean()),
                         "base_2d_pct": 100 * float(b["epe_2d_px"].mean()) / read["image_size"],
                         "bmc_2d_px": float(x["epe_2d_px"].mean()),
                         **{f"{m}_reduction_pct": _reduction_pct(x[m], b[m])
                            for m in (metric, "depth_mm", "pa_mpjpe_mm", "root_depth_mm")}})
    if not rows:
        raise FileNotFoundError(f"no level of benchmark {bench.name} has both {base} and {bmc} under {results_root}")
    df = pd.DataFrame(rows)
    kp_path = Path(keypoint_map) if keypoint_map else Path(results_root) / "tables" / "regime_map.csv"
    kp = None
    if kp_path.is_file():
        k = pd.read_csv(kp_path)
        k = k[(k["population"] == population) & (k["method"] == "lifter") & (k["limits"] == rule)].sort_values("noise_px")
        if len(k):
            kp = k.assign(err_pct=100 * RAYLEIGH_MEAN * k["noise_px"] / RegimeConfig().image_size)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True)
    for ax, (col, label) in zip(axes, [(f"{metric}_reduction_pct", metric.replace("_mm", "")),
                                       ("pa_mpjpe_mm_reduction_pct", "PA-MPJPE")]):
        if kp is not None and col.startswith(metric):
            ax.plot(kp["err_pct"], kp["reduction_pct"], "-s", color="0.4", ms=4,
                    label=f"keypoint map (lifter vs source-only, {population}, {rule}; ± sd over seeds): "
                          "root-rel. depth")
            ax.fill_between(kp["err_pct"], kp["reduction_pct"] - kp["reduction_pct_std"],
                            kp["reduction_pct"] + kp["reduction_pct_std"], color="0.4", alpha=0.15, lw=0)
        for i, (level, g) in enumerate(df.groupby("level", sort=False)):
            ax.scatter(g["base_2d_pct"], g[col], color=f"C{i}", s=30,
                       label=f"images, {level} level (run 3 vs run 2, one point per seed)", zorder=3)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel(f"2D error of the no-BMC network (% of the crop:\nimages {'/'.join(map(str, sorted(sizes)))} px"
                      + ("" if kp is None else f", keypoint map {RegimeConfig().image_size} px") + ")", fontsize=9)
        ax.set_ylabel(f"BMC's reduction of {label} (%)\n(positive: BMC better)", fontsize=9)
        ax.set_title("the test's metric" if col.startswith(metric) else
                     "PA-MPJPE (not tested; no keypoint-map counterpart)", fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()  # below the panels: it covers no point
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=1, frameon=False)
    fig.suptitle(f"Benchmark {bench.name}: does the image network sit where the keypoint map says?", fontsize=10)
    fig.tight_layout(rect=(0, 0.045 * (len(labels) + 0.5), 1, 1))
    save(fig, Path(results_root) / "figures" / "regime_map_images.png")
    prov = provenance(made_by="bmc verdict --map", benchmark=str(bench.path))
    kp_text = ("" if kp is None else "\n\nThe keypoint map at the same 2D error (`tables/regime_map.csv`, lifter with BMC "
               f"on the target's noisy 2D, {population}, {rule}; mean 2D error = noise x 1.25, in % of its "
               f"{RegimeConfig().image_size} px crop):\n\n"
               + frame_markdown(kp[["noise_px", "err_pct", "reduction_pct", "reduction_pct_std"]].rename(
                   columns={"err_pct": "2D error (% of the crop)", "reduction_pct": "depth reduction (%)",
                            "reduction_pct_std": "std over seeds"})))
    md = (f"# The image-level regime map (benchmark {bench.name})\n\nPer level and seed: run `{bmc}`'s paired reduction "
          f"against `{base}` (positive: BMC better) and `{base}`'s 2D error on target-test.\n\n"
          + frame_markdown(df) + kp_text + "\n\n![map](../figures/regime_map_images.png)\n\n"
          f"Made by `bmc verdict --map` at commit {prov['git_commit']}, {prov['time']}.")
    return write_table(df, Path(results_root) / "tables" / "regime_map_images", md)
