"""A run's per-image scores, computed once and committed beside its predictions.

Every table that judges a benchmark with a validated test (v3's verdict) compares runs image by
image. Those scores used to be recomputed from ``predictions.npz`` and the evaluation cache each
time a table was built, so a table could be rebuilt only on a machine holding the rendered
target-test labels of that level (a fresh clone running ``make reproduce`` has only the test
level's data: issue "make reproduce fails on a fresh clone"). Now the run is scored once, where
its labels are, into ``results/runs/<run>/scores.npz``:

    run/<metric>      (N,) float64  :func:`bmclib.evaluate.per_image_metrics` of the saved predictions
    flat_on/<metric>  (N,) float64  the same for the flat hand on the run's own 2D (the verdict's control)
    meta              a JSON string: format, images, image_size, eval_cache, eval_sha256 (the labels'),
                      source_cache, predictions_sha256 (of the saved arrays, not the file's bytes), made_by,
                      git_commit, time

The predictions are scored as saved (float32 read as float64), exactly as a table built from
them would; :func:`read_scores` refuses a file whose predictions or labels no longer match
(``predictions_sha256`` against ``predictions.npz``, ``eval_sha256`` against ``metrics.json``),
so a stale score is never used. ``bmc experiment`` writes the file after evaluating a run;
``bmc scores`` (re)writes it for runs trained before, where their data is.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SCORES_FILE", "FORMAT", "GROUPS", "predictions_digest", "score_arrays", "write_scores", "read_scores",
           "has_valid_scores", "validated_runs", "add_cli_arguments", "cli_main"]

SCORES_FILE = "scores.npz"
FORMAT = 1
#: the arrays' groups: the run's prediction, and the flat hand on its 2D
GROUPS = ("run", "flat_on")


def predictions_digest(pred: dict[str, np.ndarray]) -> str:
    """sha256 of the predicted arrays as read (``xyz``, then ``uv`` where saved; float64 C order): the
    identity of a run's predictions, independent of the ``.npz`` file's zip timestamps."""
    h = hashlib.sha256()
    for k in ("xyz", "uv"):
        if k in pred:
            h.update(k.encode())
            h.update(np.ascontiguousarray(pred[k], dtype=np.float64).tobytes())
    return h.hexdigest()


def score_arrays(xyz: np.ndarray, uv: np.ndarray, gt_xyz: np.ndarray, gt_uv: np.ndarray, K: np.ndarray,
                 source_xyz: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Per-image metrics of predictions ``xyz (N, 21, 3)`` m / ``uv (N, 21, 2)`` px against the labels
    ``gt_xyz``, ``gt_uv``, ``K (N, 3, 3)``, and of the flat hand on ``uv`` (every joint at the median
    distance of the 3D-labelled source poses ``source_xyz (M, 21, 3)``): ``{"run": {metric: (N,)},
    "flat_on": {metric: (N,)}}``."""
    from ..evaluate import per_image_metrics
    from .controls import control_poses, source_stats

    flat = control_poses(uv, K, gt_xyz, source_stats(source_xyz))["flat_const"]
    return {"run": per_image_metrics(xyz, gt_xyz, uv, gt_uv), "flat_on": per_image_metrics(flat, gt_xyz, uv, gt_uv)}


def write_scores(run_dir: str | os.PathLike, eval_cache: str | os.PathLike | None = None,
                 source_cache: str | os.PathLike | None = None, made_by: str = "bmc scores") -> Path:
    """Score the run in ``run_dir`` (its ``predictions.npz`` and ``metrics.json``) on its evaluation
    labels and write ``run_dir/scores.npz`` atomically. The caches default to those its metrics
    file names; the labels must be the ones it was evaluated on (sha256). Returns the file's path."""
    import datetime as _dt

    from ..data.cache import PreparedCache
    from ..predictions import read_predictions
    from ..results import atomic_path, git_commit
    from .controls import run_provenance

    run_dir = Path(run_dir)
    prov = run_provenance(run_dir / "metrics.json")
    pred = read_predictions(run_dir / "predictions.npz")
    if "uv" not in pred:
        raise ValueError(f"{run_dir / 'predictions.npz'}: no 'uv' array: the per-image scores need the predicted 2D")
    ev_path = Path(eval_cache or prov["data"].get("eval_cache") or "")
    src_path = Path(source_cache or prov["data"].get("source") or "")
    ev, src = PreparedCache(ev_path), PreparedCache(src_path)
    sha = ev.meta["annotations_sha256"]
    if prov["data"].get("eval_sha256") != sha:
        raise ValueError(f"{run_dir / 'metrics.json'}: evaluated on other labels than {ev_path} "
                         f"({str(prov['data'].get('eval_sha256'))[:12]} vs {sha[:12]})")
    a = ev.annotations
    if len(a["xyz"]) != len(pred["xyz"]):
        raise ValueError(f"{run_dir / 'predictions.npz'}: {len(pred['xyz'])} poses for the {len(a['xyz'])} images "
                         f"of {ev_path}")
    src_xyz = src.annotations["xyz"][src.annotations["has_3d"]].astype(np.float64)
    scores = score_arrays(pred["xyz"], pred["uv"], a["xyz"].astype(np.float64), a["uv"].astype(np.float64),
                          a["K"].astype(np.float64), src_xyz)
    meta = {"format": FORMAT, "images": int(len(pred["xyz"])), "image_size": int(ev.size),
            "eval_cache": str(prov["data"].get("eval_cache")), "eval_sha256": sha,
            "source_cache": str(prov["data"].get("source")), "predictions_sha256": predictions_digest(pred),
            "made_by": made_by, "git_commit": git_commit(),
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    arrays = {f"{g}/{m}": np.asarray(v, dtype=np.float64) for g in GROUPS for m, v in scores[g].items()}
    out = run_dir / SCORES_FILE
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    return out


def read_scores(run_dir: str | os.PathLike, prov: dict[str, Any] | None = None,
                pred: dict[str, np.ndarray] | None = None) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """``({"run": {metric: (N,)}, "flat_on": {...}}, meta)`` of ``run_dir/scores.npz``, checked against
    the run: its predictions (``pred``, else read from ``predictions.npz``) must be the ones scored
    and its metrics file (``prov``, else read) must name the same labels. Anything else is a
    ``ValueError`` (``FileNotFoundError`` when there is no file) naming the file and the field."""
    from ..predictions import read_predictions
    from .controls import run_provenance

    run_dir = Path(run_dir)
    path = run_dir / SCORES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no per-image scores: {path} (`bmc scores {run_dir}` writes them where the "
                                f"run's evaluation data is)")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from e
    if "meta" not in files:
        raise ValueError(f"{path}: no 'meta' field (has {sorted(files)})")
    try:
        meta = json.loads(str(files.pop("meta")))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: field 'meta' is not JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: field 'meta' has format {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                         f"expected {FORMAT}")
    n = meta.get("images")
    out: dict[str, dict[str, np.ndarray]] = {g: {} for g in GROUPS}
    for key, arr in files.items():
        group, _, metric = key.partition("/")
        if group not in GROUPS or not metric:
            raise ValueError(f"{path}: unexpected field {key!r} (expected run/<metric>, flat_on/<metric>, meta)")
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{path}: field {key!r} has shape {arr.shape} and dtype {arr.dtype}, expected ({n},) float")
        if not np.isfinite(arr).all():
            raise ValueError(f"{path}: field {key!r} has {int((~np.isfinite(arr)).sum())} non-finite values")
        out[group][metric] = arr.astype(np.float64)
    for g in GROUPS:
        if not out[g]:
            raise ValueError(f"{path}: no {g}/<metric> fields")
    prov = run_provenance(run_dir / "metrics.json") if prov is None else prov
    if prov.get("data", {}).get("eval_sha256") != meta.get("eval_sha256"):
        raise ValueError(f"{path}: field 'meta.eval_sha256' ({str(meta.get('eval_sha256'))[:12]}) is not the labels "
                         f"{run_dir / 'metrics.json'} names ({str(prov.get('data', {}).get('eval_sha256'))[:12]}): "
                         f"stale; rerun `bmc scores {run_dir}`")
    pred = read_predictions(run_dir / "predictions.npz") if pred is None else pred
    if predictions_digest(pred) != meta.get("predictions_sha256"):
        raise ValueError(f"{path}: field 'meta.predictions_sha256' does not match {run_dir / 'predictions.npz'}: "
                         f"the scores are of other predictions; rerun `bmc scores {run_dir}`")
    return out, meta


def has_valid_scores(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` has a ``scores.npz`` that :func:`read_scores` accepts."""
    try:
        read_scores(run_dir)
    except (OSError, ValueError):
        return False
    return True


def add_cli_arguments(p) -> None:
    """The options of ``bmc scores``."""
    p.add_argument("runs", nargs="*", help="run folders (default: every run of a benchmark with a validated test "
                                           "under --results/runs, e.g. results/runs/cpu_v3-*)")
    p.add_argument("--results", default="results", help="where runs/ is (for the default selection)")
    p.add_argument("--eval-cache", help="the evaluation cache (default: the one each run's metrics.json names)")
    p.add_argument("--source-cache", help="the source training cache (default: the one each run names)")
    p.add_argument("--force", action="store_true", help="rewrite scores that are already up to date")


def validated_runs(results_root: str | os.PathLike) -> list[Path]:
    """Run folders of the benchmarks whose file has a test with a metric (v3 on): ``<preset>_<name>-<level>_*``."""
    import yaml

    out = []
    for spec in sorted(Path(results_root).glob("benchmark_v*.yaml")):
        test = (yaml.safe_load(spec.read_text()) or {}).get("test") or {}
        if isinstance(test, dict) and "metric" in test:
            name = spec.stem[len("benchmark_"):]
            out += sorted(d for d in Path(results_root, "runs").glob(f"*_{name}-*_seed*")
                          if (d / "predictions.npz").is_file())
    return out


def cli_main(a) -> int:
    """``bmc scores`` with parsed options."""
    from ..progress import tqdm

    runs = [Path(r) for r in a.runs] if a.runs else validated_runs(a.results)
    if not runs:
        raise FileNotFoundError(f"no run folders given and none of a benchmark with a validated test under "
                                f"{Path(a.results) / 'runs'}")
    for r in runs:
        if not (r / "predictions.npz").is_file():
            raise FileNotFoundError(f"{r}: no predictions.npz (not a run folder)")
    todo = [r for r in runs if a.force or not has_valid_scores(r)]
    print(f"{len(runs)} runs, {len(runs) - len(todo)} already scored", flush=True)
    for r in tqdm(todo, desc="scores", unit="run"):
        write_scores(r, a.eval_cache, a.source_cache)
    print(f"wrote {len(todo)} scores files: " + ", ".join(str(r / SCORES_FILE) for r in todo[:3])
          + (" ..." if len(todo) > 3 else ""), flush=True)
    return 0
