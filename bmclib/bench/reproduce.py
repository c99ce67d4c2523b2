"""The reproduction: synthetic data, then every notebook through papermill.

``bmc reproduce --preset cpu`` (what ``make reproduce`` runs) executes the steps in order,
each with a progress line and its time, and a total at the end:

    data                  the synthetic benchmark's two domains for the preset
    01 .. 06              ``notebooks/NN_*.ipynb`` with ``notebooks/params/<preset>/NN_*.yaml``;
                          executed copies to ``results/notebooks/``
    README                (cpu preset, whole run) the README's v3 sections rewritten from the
                          tables the notebooks rebuilt (``bmc summary``)

A finished step leaves a stamp in ``data/reproduce/<preset>/`` (not under version control:
a fresh machine redoes everything) holding a hash of the notebook and its parameters; a
re-run skips stamped steps whose hash still matches, unless ``--force``. Executed notebooks
are written to a ``.partial`` file and replace the executed copy only when complete, so a
failed step never replaces a good one; live widget state is dropped from executed copies
(each widget has a static picture next to it).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from .checkout import checkout, find_checkout

__all__ = ["NOTEBOOKS", "data_plan", "unplanned_reads", "notebook_parameters", "run_notebook", "reproduce", "REPO"]

#: the checkout whose notebooks are run (the working directory where there is none: its commands then say so)
REPO = find_checkout() or Path(".")
NOTEBOOKS = ("01_skeleton_decomposition", "02_angle_envelopes", "03_bmc_as_a_prior", "04_train_weakly_supervised",
             "05_results_tables", "06_pose_inspector")
KERNEL = "python3"


def notebook_parameters(name: str, preset: str, notebooks_dir: Path = REPO / "notebooks") -> dict[str, Any]:
    """The parameters file of one notebook for one preset (a YAML mapping of literals)."""
    path = notebooks_dir / "params" / preset / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no parameters for notebook {name!r} and preset {preset!r}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of parameter names to values, got {type(data).__name__}")
    return data


def run_notebook(name: str, parameters: dict[str, Any], out_dir: str | os.PathLike,
                 notebooks_dir: Path = REPO / "notebooks", cwd: Path = REPO) -> Path:
    """Execute ``notebooks/<name>.ipynb`` with papermill (kernel named explicitly) into
    ``out_dir/<name>.ipynb``, atomically. Raises ``RuntimeError`` naming the notebook and the
    partial output on failure."""
    import papermill as pm

    src = notebooks_dir / f"{name}.ipynb"
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such notebook")
    out = Path(out_dir) / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.ipynb")
    try:
        pm.execute_notebook(str(src), str(partial), parameters=parameters, kernel_name=KERNEL, cwd=str(cwd),
                            progress_bar=False)
    except Exception as e:  # papermill's PapermillExecutionError carries the cell's traceback
        raise RuntimeError(f"notebook {name} failed ({type(e).__name__}: {str(e).strip()[:2000]}); "
                           f"partial output in {partial}") from e
    import nbformat

    from ..results import atomic_path

    nb = nbformat.read(partial, as_version=4)
    # live widget state (anywidget stores plotly.js itself, ~5 MB a figure) is useless without a
    # kernel; the notebooks draw a static picture of every view instead
    nb.metadata.pop("widgets", None)
    # papermill records where it read and wrote: keep those paths relative to the repository,
    # so a committed executed notebook names no folder of the machine that ran it
    pm_meta = nb.metadata.get("papermill", {})
    pm_meta["input_path"] = os.path.relpath(src, cwd)
    pm_meta["output_path"] = os.path.relpath(out, cwd)
    with atomic_path(out) as tmp:
        nbformat.write(nb, tmp)
    partial.unlink()
    return out


def data_plan(preset: str = "cpu", data_root: str | os.PathLike = "data") -> dict[str, Any]:
    """What the data step makes, without making it: benchmark v3 at the level of its test
    (:func:`bmclib.bench.experiment.data_paths`: the ``source``, ``target_2d``, ``target_3d`` and
    ``eval`` caches, their ``root``), with the ``benchmark`` and ``level``. A notebook reads no other
    data: every table it rebuilds from committed runs reads their ``scores.npz``
    (``tests/test_reproduce_data.py`` checks this on the committed runs)."""
    from .benchmark import load_benchmark
    from .experiment import data_paths
    from ..train import preset as train_preset

    bench = load_benchmark(checkout("bmc reproduce") / "results" / "benchmark_v3.yaml")
    level = bench.test.get("level", bench.levels[0])
    paths = data_paths(Path(data_root) / "synth", preset, train_preset(preset).image_size, seed=bench.data_seed,
                       benchmark=bench, appearance=level)
    return {**paths, "benchmark": bench, "level": level}


def unplanned_reads(results_root: str | os.PathLike = "results", preset: str = "cpu",
                    data_root: str | os.PathLike = "data") -> list[str]:
    """The committed runs whose tables the notebooks could rebuild only with data the reproduction
    does not make: each run of a benchmark with a validated test (the verdict re-reads them all)
    that has no valid ``scores.npz`` and whose evaluation or source cache is not in
    :func:`data_plan`. One line per such run, saying why; empty when the reproduction is
    self-sufficient. Reads only the committed files (nothing is rendered)."""
    from .controls import run_provenance
    from .scores import read_scores, validated_runs

    plan = data_plan(preset, data_root)
    planned = {os.path.normpath(str(plan[k])) for k in ("source", "target_2d", "target_3d", "eval")}
    out = []
    for run_dir in validated_runs(results_root):
        if not run_dir.name.startswith(f"{preset}_"):
            continue
        try:
            read_scores(run_dir)
            continue
        except (OSError, ValueError) as e:
            why = str(e)
        try:
            data = run_provenance(run_dir / "metrics.json")["data"]
        except (OSError, ValueError) as e:
            out.append(f"{run_dir}: {why}; and its caches cannot be read from it ({e})")
            continue
        need = [data["eval_cache"], data["source"]]
        extra = [p for p in need if os.path.normpath(p) not in planned]
        if extra:
            out.append(f"{run_dir}: {why}; its tables would need {', '.join(extra)}, which the data step "
                       f"({plan['benchmark'].name} at the {plan['level']} level) does not make")
    return out


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def reproduce(preset: str = "cpu", results_root: str = "results", data_root: str = "data", force: bool = False,
              only: list[str] | None = None, device: str | None = None) -> float:
    """Run the reproduction; returns the total seconds. ``only`` restricts to some steps
    (``data`` or notebook names / number prefixes)."""
    from .experiment import prepare_data
    from ..results import write_json_atomic
    from ..train import preset as train_preset

    root = checkout("bmc reproduce")
    # the data the notebooks train and browse: benchmark v3 at the level of its test
    plan = data_plan(preset, data_root)
    bench, level = plan["benchmark"], plan["level"]
    roots = {"results_root": results_root, "data_root": f"{data_root}/synth", "runs_root": f"{data_root}/runs"}
    stamps = Path(data_root) / "reproduce" / preset
    steps = ["data", *NOTEBOOKS]
    if only:
        steps = [s for s in steps if any(s == o or s.startswith(o + "_") for o in only)]
        if not steps:
            raise ValueError(f"--only {only}: no such step; steps are data, {', '.join(NOTEBOOKS)}")
    if preset == "cpu" and not only:  # fail now, not after the trainings, if a notebook would need other data
        bad = unplanned_reads(Path(results_root), preset, data_root)
        if bad:
            raise ValueError(f"{len(bad)} committed run(s) can be tabled only with data the reproduction does not "
                             f"make (run `bmc scores` where their data is): " + "; ".join(bad[:3]))
    t_all = time.perf_counter()
    for i, step in enumerate(steps, 1):
        t0 = time.perf_counter()
        head = f"[{i}/{len(steps)}] {step}"
        if step == "data":
            digest = _digest(preset, "v3", bench.data_seed, level)
        else:
            params = {**notebook_parameters(step, preset), **roots, "preset": preset}
            if device:
                params["device"] = device
            digest = _digest((REPO / "notebooks" / f"{step}.ipynb").read_bytes(), params)
        stamp = stamps / f"{step}.json"
        if not force and stamp.is_file() and json.loads(stamp.read_text()).get("digest") == digest:
            print(f"{head}: done before (stamp {stamp}); skipped", flush=True)
            continue
        print(f"{head} ...", flush=True)
        if step == "data":
            prepare_data(roots["data_root"], preset, train_preset(preset).image_size, seed=bench.data_seed,
                         progress=False, benchmark=bench, appearance=level)
            what = roots["data_root"]
        else:
            what = run_notebook(step, params, Path(results_root) / "notebooks")
        dt = time.perf_counter() - t0
        write_json_atomic(stamp, {"digest": digest, "seconds": round(dt, 1), "output": str(what)})
        print(f"{head}: done in {dt:.0f} s -> {what}", flush=True)
    if preset == "cpu" and Path(results_root).resolve() == (root / "results").resolve() and not only:
        from .summary import write_sections  # the README's v3 sections follow the tables the notebooks rebuilt

        try:
            differ = write_sections(root)
            print(f"README sections (bmc summary): {'rewrote ' + ', '.join(differ) if differ else 'up to date'}",
                  flush=True)
        except (OSError, ValueError) as e:  # the notebooks' outputs stand; only the README was not rewritten
            print(f"README sections not rewritten ({e}); run `bmc summary` once it is fixed", flush=True)
    total = time.perf_counter() - t_all
    print(f"reproduction ({preset}) finished in {total / 60:.1f} min", flush=True)
    return total


def add_cli_arguments(p) -> None:
    """The options of ``bmc reproduce``."""
    params = REPO / "notebooks" / "params"  # the presets the notebooks have parameters for
    choices = sorted(d.name for d in params.iterdir() if d.is_dir()) if params.is_dir() else None
    p.add_argument("--preset", default="cpu", choices=choices, help="data size and training preset of every step")
    p.add_argument("--results", default="results", help="where tables, figures and executed notebooks go")
    p.add_argument("--data", default="data", help="synthetic data, checkpoints and step stamps (not versioned)")
    p.add_argument("--force", action="store_true", help="redo finished steps")
    p.add_argument("--only", nargs="+", help="run only these steps (data, 01, 02_angle_envelopes, ...)")
    p.add_argument("--device", help="cuda / cpu (default: the notebooks' parameter)")


def cli_main(a) -> int:
    """``bmc reproduce`` with parsed options."""
    reproduce(a.preset, a.results, a.data, a.force, a.only, a.device)
    return 0
