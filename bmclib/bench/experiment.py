"""The synthetic benchmark: does 2D-only data help depth, and how much more with BMC?

Runs (source = 3D labels, target = 2D labels; evaluated on target-test with full 3D):
    1_source3d          source 3D only
    2_target2d          + target 2D
    3a_bmc_bl           + target 2D + BMC (bone lengths only)
    3b_bmc_bl_rb        + target 2D + BMC (bone lengths and root bones)
    3_bmc_all           + target 2D + BMC (all three terms)
    4_target3d_oracle   + target with its 3D labels (an upper bound)
    5_bmc_literature    as 3_bmc_all, with the literature limits (BMCLimits.default()) instead of
                        limits fitted on the source domain (28% of target poses fall outside the
                        source-fitted limits, 0.005% outside the literature ones: notebook 02)
    6_bmc_depth_grad    as 3_bmc_all, but the BMC gradient reaches only the root-relative depths
                        (uv and root detached): 2D is supervised in both domains, and in run 3
                        the BMC's pull on uv was ~200x the 2D loss's and its 2D error rose
    7_bmc_warmup        as 3_bmc_all, with BMC off for the first half of training, then ramped
                        up over a tenth of it (the keypoints learn first)
    8_bmc_lambda_0.1    as 3_bmc_all with all three lambdas at 0.1
Runs 6-8 are the diagnostics of why (3) did not beat (2) by the paper's margin; see the README.

``bmc experiment --preset cpu --seeds 0 1 2`` makes the data if missing, trains and
evaluates every run (skipping runs trained to the end in ``runs_root`` and evaluated since,
unless ``--force``; a committed metrics file alone does not count, so a fresh machine
trains everything; an interrupted run resumes from its checkpoint), and writes
``results/tables/synthetic_benchmark.{csv,md}`` and ``results/figures/synthetic_benchmark_depth.png``.
BMC limits are fitted on the source training set's 3D labels (never on the target).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.synth import PRESETS as DATA_SIZES  # synthetic data per preset (one home: data.synth)
from .runs import run_name
from .runs import RUNS

__all__ = ["RUNS", "prepare_data", "data_paths", "run_experiment", "run_jobs", "trained_steps", "source_limits", "build_table",
           "add_cli_arguments", "cli_main"]



def prepare_data(root: str | Path, preset: str, image_size: int, seed: int = 0, progress: bool = True,
                 benchmark=None, sizes: tuple[int, int] | None = None, device: str | None = None,
                 appearance: str | None = None) -> dict[str, Path]:
    """Both domains for a preset (made once), and the target's 3D cache for the oracle run.
    With a :class:`~bmclib.bench.benchmark.Benchmark`, its data settings (populations) and its own
    folder ``<name>_<preset>_<size>px_seed<k>``. ``sizes``: (training, evaluation) images per
    domain instead of the preset's (the folder name then says them); ``device``: render there;
    ``appearance``: ``"skin"`` or ``"glove"`` (default: the benchmark's ``data.appearance``, else skin;
    a glove folder ends in ``_glove``)."""
    from ..data.freihand import freihand_to_cache
    from ..data.synth import generate_dataset

    paths = data_paths(root, preset, image_size, seed, benchmark, sizes, appearance)
    root, appearance = paths["root"], paths["appearance"]
    n_train, n_eval = sizes or DATA_SIZES[preset]
    data = benchmark.data if benchmark is not None else {}
    for i, domain in enumerate(("source", "target")):
        if not (root / domain / "cache" / "evaluation" / "meta.json").is_file():
            generate_dataset(str(root / domain), domain, n_train, n_eval, seed=seed * 10 + i, size=image_size,
                             device=device, progress=progress, overwrite=True, n_hands=data.get(f"n_hands_{domain}"),
                             population_seed=int(data.get("population_seed", 0)) + i, appearance=appearance)
    oracle = paths["target_3d"]
    if not (oracle / "meta.json").is_file():
        freihand_to_cache(root / "target", oracle, "training", labels="3d", overwrite=True, progress=progress)
    return {k: v for k, v in paths.items() if k != "appearance"}


def data_paths(root: str | Path, preset: str, image_size: int, seed: int = 0, benchmark=None,
               sizes: tuple[int, int] | None = None, appearance: str | None = None) -> dict[str, Any]:
    """Where :func:`prepare_data` puts the data for these arguments, without making anything:
    ``source``, ``target_2d``, ``target_3d``, ``eval`` (caches), ``root`` and ``appearance``."""
    prefix = f"{benchmark.name}_" if benchmark is not None else ""
    n_train, n_eval = sizes or DATA_SIZES[preset]
    counts = f"_{n_train}+{n_eval}" if sizes else ""
    data = benchmark.data if benchmark is not None else {}
    appearance = appearance or data.get("appearance", "skin")
    look = "" if appearance == "skin" else f"_{appearance}"
    root = Path(root) / f"{prefix}{preset}_{image_size}px{counts}_seed{seed}{look}"
    return {"source": root / "source" / "cache" / "training", "target_2d": root / "target" / "cache" / "training",
            "target_3d": root / "target" / "cache" / "training_3d", "eval": root / "target" / "cache" / "evaluation",
            "root": root, "appearance": appearance}


def source_limits(data: dict[str, Path], bench=None, base=None) -> Path:
    """``<data root>/limits_source.json``, fitted once on the source training set's 3D labels (by
    the benchmark's rule, or v1's through ``base``'s config) and checked on every call."""
    from ..data.cache import PreparedCache
    from ..limits import BMCLimits
    from ..train import resolve_limits

    path = data["root"] / "limits_source.json"
    if not path.is_file():
        src = PreparedCache(data["source"])
        if bench is not None:
            xyz = src.annotations["xyz"][src.annotations["has_3d"]].astype("float64")
            bench.fit_limits(xyz, source=f"fit ({bench.name}: {bench.limits['rule']}): {src.path}").save(path)
        else:
            resolve_limits(base, src).save(path)
    BMCLimits.load(path)  # fail early on a broken file
    return path


def trained_steps(run_dir: Path, cfg) -> int:
    """Steps done by the checkpoint in ``run_dir`` if it was saved with ``cfg`` (else 0)."""
    from ..train import same_config
    from ..validate import load_checkpoint

    ck_path = run_dir / "checkpoint.pt"
    if not ck_path.is_file():
        return 0
    ck = load_checkpoint(ck_path, "cpu")
    return int(ck["step"]) if same_config(ck["config"], cfg) else 0


def _run_one(cfg_dict: dict[str, Any], eval_cache: str, results_runs: str, limits_path: str, retrain: bool,
             device: str | None, progress: bool, threads: int | None = None, on_log=None) -> dict[str, Any]:
    """Train (unless done) and evaluate one run; a worker process's whole job under ``jobs > 1``."""
    import torch

    from ..evaluate import evaluate_run
    from ..limits import BMCLimits
    from ..train import TrainConfig, config_from_dict, train

    if threads:
        torch.set_num_threads(threads)
    cfg = config_from_dict(TrainConfig, cfg_dict, cfg_dict["name"])
    run_dir = Path(cfg.out) / cfg.name
    if retrain:  # resumes from a checkpoint of an interrupted run
        train(cfg, device=device, progress=progress, on_log=on_log)
    metrics = evaluate_run(run_dir, eval_cache, results_runs, BMCLimits.load(limits_path), device or "cpu")
    from .scores import write_scores  # scored once per image, where the labels are: the tables read this file

    write_scores(Path(results_runs) / cfg.name, eval_cache, cfg.source, made_by="bmc experiment")
    return metrics


def run_experiment(preset: str = "cpu", seeds=(0, 1, 2), runs: list[str] | None = None, data_root: str = "data/synth",
                   runs_root: str = "data/runs", results_root: str = "results", force: bool = False,
                   progress: bool = True, device: str | None = None, overrides: dict[str, Any] | None = None,
                   on_log=None, jobs: int = 1, evaluate_only: bool = False, benchmark: str | None = None,
                   data_sizes: tuple[int, int] | None = None, level: str | None = None) -> Path:
    """Train and evaluate ``runs`` x ``seeds``; returns the table's path.

    ``jobs > 1`` trains that many runs at once in worker processes with ``cores / jobs``
    threads each (CPU only): small convolutions use two threads poorly, so on this 2-core
    machine two one-thread runs together train 1.38x as many images per second as one
    two-thread run (``bmc bench jobs``, cpu preset). Results do depend slightly on the thread
    count (float summation order), so a run is reproduced exactly only with the same ``jobs``.
    ``evaluate_only`` re-evaluates the runs trained to the end (new metrics, other limits)
    and trains nothing. ``data_sizes``: (training, evaluation) images per domain instead of the
    preset's (a quick check; its own data folder). ``benchmark``: a pre-registered benchmark file
    (:mod:`bmclib.bench.benchmark`, e.g. ``results/benchmark_v2.yaml``) whose runs, data, limits
    rule, lambdas and loss balance replace benchmark v1's (:data:`RUNS`); ``level``: one of its
    ``data.levels`` (appearances; default the first), its runs named ``<preset>_<name>-<level>_...``."""
    from ..train import preset as make_preset

    from .benchmark import load_benchmark

    bench = load_benchmark(benchmark) if benchmark else None
    registry = bench.runs if bench is not None else RUNS
    runs = runs or list(registry)
    unknown = set(runs) - set(registry)
    if unknown:
        raise ValueError(f"unknown runs {sorted(unknown)}; choose from {list(registry)}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs > 1 and (device or "cpu") != "cpu":
        raise ValueError("jobs > 1 runs several trainings on the CPU; use jobs=1 (or torchrun) on a GPU")
    caller_overrides = dict(overrides or {})
    base = make_preset(preset, **(overrides or {}))
    if bench is not None:  # the benchmark's frozen settings, then the caller's overrides
        overrides = {**bench.train_overrides(base.batch_size, base.steps), **(overrides or {})}
    elif level is not None:
        raise ValueError("level needs a benchmark file with data.levels")
    else:  # benchmark v1 as it was run: 2D loss in image widths, BMC on the network's own root
        from ..train import LEGACY_DEFAULTS

        overrides = {**LEGACY_DEFAULTS, **(overrides or {})}
    base = make_preset(preset, **overrides)
    bench_name = bench.run_bench_name(level) if bench is not None else None
    look = (level or bench.levels[0]) if bench is not None and "levels" in bench.data else None
    data = prepare_data(data_root, preset, base.image_size, seed=bench.data_seed if bench is not None else 0,
                        progress=progress, benchmark=bench, sizes=data_sizes, device=device, appearance=look)
    # one set of limits for training (BMC runs) and for the plausibility metric of every run
    limits_path = source_limits(data, bench, base)
    where = (str(data["eval"]), str(Path(results_root) / "runs"), str(limits_path))
    todo = []
    for seed in seeds:
        for run in runs:
            spec = dict(registry[run])
            spec.pop("description", None)
            name = run_name(preset, run, seed, bench_name)
            weak = {None: "", "2d": str(data["target_2d"]), "3d": str(data["target_3d"])}[spec.pop("weak")]
            spec.setdefault("limits", str(limits_path))
            for key in ("bmc_start", "bmc_ramp"):
                if f"{key}_frac" in spec:
                    spec[key] = int(round(spec.pop(f"{key}_frac") * base.steps))
            cfg = make_preset(preset, **{**(overrides or {}), **spec}, name=name, seed=seed, source=str(data["source"]),
                              weak=weak, out=runs_root)
            run_dir = Path(runs_root) / name
            metrics_file = Path(results_root) / "runs" / name / "metrics.json"
            # finished = trained here to the last step with this config, and evaluated since
            trained = trained_steps(run_dir, cfg) == cfg.steps
            if evaluate_only:
                if trained:
                    todo.append((name, (cfg.to_dict(), *where, False, device)))
                else:
                    print(f"[not trained] {name}: no finished checkpoint in {run_dir} with this config")
                continue
            if trained and metrics_file.is_file() and metrics_file.stat().st_mtime >= \
                    (run_dir / "checkpoint.pt").stat().st_mtime and not force:
                print(f"[skip] {name}: trained in {run_dir} and evaluated in {metrics_file}")
                from .scores import has_valid_scores, write_scores

                if not has_valid_scores(metrics_file.parent):  # evaluated before runs were scored once
                    write_scores(metrics_file.parent, data["eval"], data["source"], made_by="bmc experiment")
                continue
            if force:
                (run_dir / "checkpoint.pt").unlink(missing_ok=True)
            todo.append((name, (cfg.to_dict(), *where, force or not trained, device)))

    def report(name: str, m: dict[str, Any]) -> None:
        norm = f"normalised depth {m['depth_norm_mm']:.2f} mm, " if "depth_norm_mm" in m else ""
        print(f"[done] {name}: {norm}root-relative depth {m['depth_mm']:.2f} mm, 3D {m['epe_3d_mm']:.2f} mm, "
              f"2D {m['epe_2d_px']:.2f} px", flush=True)

    run_jobs(todo, jobs, progress, report, on_log=on_log)
    if bench is not None and "metric" in bench.test:  # a validated test (v3): the verdict at this level
        from .verdict import verdict_table

        # runs whose settings the caller changed (fewer steps: a smoke run) are reported, never judged
        return verdict_table(bench.path, look, results_root, preset, strict=not caller_overrides)
    return build_table(preset, results_root, bench.name if bench is not None else None)


def run_jobs(todo: list[tuple[str, tuple]], jobs: int, progress: bool, report, on_log=None) -> None:
    """Run ``todo`` (``(name, arguments of _run_one)``) one after the other, or ``jobs`` at once in
    worker processes with ``cores / jobs`` threads each; ``report(name, metrics)`` after each.
    A failed run does not stop the others; a ``RuntimeError`` names the failed ones at the end."""
    if jobs == 1 or len(todo) <= 1:
        for name, args in todo:
            report(name, _run_one(*args, progress, on_log=on_log))
        return
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    print(f"{len(todo)} runs in {jobs} processes with {threads} thread(s) each", flush=True)
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_run_one, *args, False, threads): name for name, args in todo}
        failed = []
        for fut in as_completed(futures):  # a failed run does not stop the others
            try:
                report(futures[fut], fut.result())
            except Exception as e:  # noqa: BLE001 - reported with its run, raised below
                print(f"[failed] {futures[fut]}: {type(e).__name__}: {e}", flush=True)
                failed.append(futures[fut])
    if failed:
        raise RuntimeError(f"runs failed: {failed} (the others finished; re-run to retry these)")


def build_table(preset: str, results_root: str = "results", bench: str | None = None) -> Path:
    """The benchmark table and figure for one preset (see :mod:`bmclib.bench.tables`)."""
    from .tables import synthetic_benchmark_table

    return synthetic_benchmark_table(preset, results_root, made_by="bmc experiment", bench=bench)


def add_cli_arguments(p) -> None:
    """The options of ``bmc experiment``."""
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
    p.add_argument("--cpu-path", choices=["reference", "fast"],
                   help="train on this CPU compute path instead of the benchmark file's (a file that names none: "
                        "reference); a run trained off the file's settings is reported, never judged")
    p.add_argument("--data-only", action="store_true",
                   help="make the benchmark's data at --level (as its runs use it) and print where; train nothing")


def cli_main(a) -> int:
    """``bmc experiment`` with parsed options."""
    if a.data_only:
        from .benchmark import load_benchmark
        from ..train import preset as make_preset

        bench = load_benchmark(a.benchmark) if a.benchmark else None
        if bench is not None and a.level is not None and a.level not in bench.levels:
            raise ValueError(f"--level {a.level!r}: not one of {bench.path}'s data.levels {list(bench.levels)}")
        look = (a.level or bench.levels[0]) if bench is not None and "levels" in bench.data else None
        data = prepare_data(a.data, a.preset, make_preset(a.preset).image_size,
                            seed=bench.data_seed if bench is not None else 0, benchmark=bench, device=a.device,
                            appearance=look)
        for k in ("source", "target_2d", "target_3d", "eval"):
            print(f"{k:10s} {data[k]}")
        return 0
    table = run_experiment(a.preset, a.seeds, a.runs, a.data, a.runs_dir, a.results, a.force, device=a.device,
                           jobs=a.jobs, evaluate_only=a.evaluate_only, benchmark=a.benchmark, level=a.level,
                           overrides={"cpu_path": a.cpu_path} if a.cpu_path else None)
    print(Path(table).read_text())
    return 0
