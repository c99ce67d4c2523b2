"""Controls for a benchmark's metrics and test conditions: can the test pass, can it fail?

A metric or a condition measures BMC's effect only if the right answer passes it and a guess that
uses no image fails it. Benchmark v2's did neither: its metric was almost all the hand's distance,
which a constant from source statistics predicted better than every weakly supervised run, and its
flat-hand condition was failed by the oracle. Here every candidate metric and condition is run on

* **positive controls** (must pass): the oracle run (the weak set's 3D labels), and the truth's
  depths placed on the no-BMC run's predicted 2D (``truth_through_2d``: BMC working perfectly at
  that 2D);
* **negative controls** (must fail): the source-only run (no weak set), a flat hand at the source's
  median distance on the predicted 2D (``flat_const``), and the source's mean pose on the predicted
  2D with its closed-form root (``mean_pose``) -- both use no image beyond the 2D;

and a metric x condition is *valid* (may be pre-registered) only if every positive control passes
and every negative control fails. Comparisons are paired: the same images, the same seed, with a
bootstrap over images and a t-interval over seeds, the wider (:func:`bmclib.bench.stats.paired_reduction`). :func:`power` says how many seeds (and
images) a 25% paired reduction needs.

``bmc controls --set source_val --appearance glove`` (the wiring study's runs on held-out source
hands), ``bmc controls --set v3 --appearance glove`` (benchmark v3's runs at a level) and
``bmc controls --set v2`` (benchmark v2's committed runs on its target-test) write
``results/tables/controls_<set>[-<level>].{csv,md}`` (the level for v3).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import skeleton as sk
from ..camera import from_2p5d, root_depth
from ..evaluate import per_image_metrics, true_depth_poses
from .stats import CONDITIONS, METRICS, paired_reduction, power

__all__ = ["SourceStats", "source_stats", "control_poses", "validate", "SETS", "benchmark_set", "load_run_predictions",
           "run_provenance", "MAX_COORDINATE_M", "run_controls"]

POSITIVE = ("oracle", "truth_through_2d")
NEGATIVE = ("source_only", "flat_const", "mean_pose")


@dataclass(frozen=True)
class SourceStats:
    """What a no-image guess may know, from the 3D-labelled source training set: the median wrist
    depth (m), the median reference-bone length (m) and the mean root-relative depth per joint in
    reference-bone units."""

    distance_m: float
    scale_m: float
    mean_z_rel: np.ndarray  # (21,)


def source_stats(xyz: np.ndarray) -> SourceStats:
    """:class:`SourceStats` of source poses ``(N, 21, 3)`` (metres, camera frame)."""
    n, m = sk.REFERENCE_BONE
    s = np.linalg.norm(xyz[:, m] - xyz[:, n], axis=-1)
    z_rel = (xyz[..., 2] - xyz[:, :1, 2]) / s[:, None]
    return SourceStats(float(np.median(xyz[:, 0, 2])), float(np.median(s)), z_rel.mean(0))


def control_poses(uv: np.ndarray, K: np.ndarray, gt_xyz: np.ndarray, stats: SourceStats) -> dict[str, np.ndarray]:
    """The controls built on one set of predicted 2D keypoints ``uv (N, 21, 2)``: ``truth_through_2d``
    (the true depths on those rays), ``flat_const`` (every joint at the source's median distance) and
    ``mean_pose`` (the source's mean relative depths, the root in closed form, the source's median
    size). Returns metric joints ``(N, 21, 3)`` each."""
    uv_t = torch.as_tensor(uv, dtype=torch.float64)
    K_t = torch.as_tensor(K, dtype=torch.float64)
    N = len(uv)
    flat = from_2p5d(uv_t, torch.zeros(N, 21, dtype=torch.float64), torch.full((N,), stats.distance_m,
                                                                                 dtype=torch.float64), K_t)
    z = torch.as_tensor(stats.mean_z_rel, dtype=torch.float64).expand(N, 21)
    Z = root_depth(uv_t, z, K_t).clamp(1.0, 100.0)
    mean = from_2p5d(uv_t, z, Z, K_t) * stats.scale_m
    return {"truth_through_2d": true_depth_poses(uv, gt_xyz, K), "flat_const": flat.numpy(), "mean_pose": mean.numpy()}


def _uninformative(arm: np.ndarray, reference: np.ndarray, is_oracle: bool = False) -> bool:
    """A control cannot judge a metric x condition when it equals the arm it is compared with (the flat
    hand against itself; a 2D metric of a control built on the base run's 2D), when it has no error
    at all by construction (the true depths on the predicted rays, on a depth metric), or when it is
    the oracle against the oracle gap."""
    return bool(is_oracle or np.array_equal(arm, reference) or not np.any(arm))


def validate(per: dict[str, dict[str, np.ndarray]], base: str = "base", n_boot: int = 2000) -> list[dict[str, Any]]:
    """Each metric x condition on each control. ``per[arm][metric]`` is ``(seeds, images)``; the arms
    are ``base``, ``oracle``, the positive and negative controls, and ``flat_on:<arm>`` (the flat hand
    on that arm's 2D). A row per metric x condition: each control's ``pass`` / ``fail`` / ``n/i`` (not
    informative: :func:`_uninformative`), and ``valid``: every control present, at least one
    informative positive and one informative negative, all informative positives pass and all
    informative negatives fail."""
    rows = []
    missing = [a for a in POSITIVE + NEGATIVE if a not in per or f"flat_on:{a}" not in per]
    for metric in METRICS:
        if metric not in per[base]:
            continue
        for cond, (sentence, test, against) in CONDITIONS.items():
            row: dict[str, Any] = {"metric": metric, "condition": cond}
            ok, n_pos, n_neg = not missing, 0, 0
            for arm in POSITIVE + NEGATIVE:
                if arm in missing:
                    row[arm] = "missing"
                    continue
                a, f = per[arm][metric], per[f"flat_on:{arm}"][metric]
                ref = {"base": per[base][metric], "flat": f, "oracle": per["oracle"][metric]}[against]
                if _uninformative(a, ref, is_oracle=(against == "oracle" and arm == "oracle")):
                    row[arm] = "n/i"
                    continue
                passed = bool(test(a, per[base][metric], f, per["oracle"][metric], n_boot=n_boot))
                row[arm] = "pass" if passed else "fail"
                if arm in POSITIVE:
                    n_pos += 1
                    ok &= passed
                else:
                    n_neg += 1
                    ok &= not passed
            row["valid"] = bool(ok and n_pos > 0 and n_neg > 0)
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- the sets of runs
#: set -> how to find its runs: the run folders under the results root, role -> run, the candidates
SETS: dict[str, dict[str, Any]] = {
    "v2": {"runs": "runs/{preset}_v2_{run}_seed{seed}", "seeds": (0, 1, 2),
           "roles": {"base": "2_target2d", "oracle": "4_target3d_oracle", "source_only": "1_source3d"},
           "candidates": ("3_bmc_all", "3a_bmc_bl", "3b_bmc_bl_rb"),
           "where": "benchmark v2's committed runs on its target-test"},
    "source_val": {"runs": "wiring_study/wiring_{preset}_{appearance}_{run}_seed{seed}", "seeds": (0, 1, 2),
                   "roles": {"base": "none", "oracle": "oracle", "source_only": "source3d"},
                   "candidates": ("v2", "maps", "maps_detached", "output", "all_bones", "pull_2d", "late", "v2_late"),
                   "where": "the wiring study's runs on held-out source hands (source validation)"},
}


def benchmark_set(level: str, benchmark: str | Path | None = None) -> dict[str, Any]:
    """The set of runs of a benchmark with a validated test (default: the checkout's
    ``results/benchmark_v3.yaml``) at one data level, as :data:`SETS` describes sets: its run
    names (:func:`bmclib.bench.runs.run_name`), its seeds, the test's base and oracle runs, the run
    without a weak set as the source-only control, and its BMC runs as the candidates."""
    from .runs import run_name
    from .benchmark import load_benchmark
    from .checkout import checkout

    bench = load_benchmark(benchmark or checkout("bmc controls --set v3") / "results" / "benchmark_v3.yaml")
    t = bench.test
    name = run_name("{preset}", "{run}", 0, bench.run_bench_name(level)).replace("seed0", "seed{seed}")
    return {"runs": f"runs/{name}", "seeds": tuple(sorted(set(t["seeds"]) | set(t.get("report_seeds", [])))),
            "roles": {"base": t["base_run"], "oracle": t["oracle_run"],
                      "source_only": next(r for r, s in bench.runs.items() if s.get("weak") is None)},
            "candidates": tuple(r for r, s in bench.runs.items() if s.get("use_bmc")),
            "where": f"benchmark {bench.name}'s runs on its target-test, {level} level (data seed {bench.data_seed})"}


def load_run_predictions(pattern: str, run: str, seeds, **names) -> dict[int, dict[str, Any]]:
    """``{seed: {"xyz", "uv", "prov", "eval_sha256", "eval_cache", "source"}}`` of the seeds of one run
    that have a ``predictions.npz`` (and its ``metrics.json``) in the folder ``pattern`` names
    (formatted with ``run``, ``seed`` and ``names``)."""
    from ..predictions import read_predictions

    out = {}
    for s in seeds:
        d = Path(pattern.format(run=run, seed=s, **names))
        if (d / "predictions.npz").is_file() and (d / "metrics.json").is_file():
            prov = run_provenance(d / "metrics.json")
            pred = read_predictions(d / "predictions.npz")
            if "uv" not in pred:
                raise ValueError(f"{d / 'predictions.npz'}: no 'uv' array: the per-image scores and the controls "
                                 f"need the predicted 2D")
            far = np.abs(pred["xyz"]).max()
            if far > MAX_COORDINATE_M:
                raise ValueError(f"{d / 'predictions.npz'}: field 'xyz' has a coordinate of {far:.3g} m (more than "
                                 f"{MAX_COORDINATE_M:g} m): not camera-frame metres")
            out[s] = {**pred, "prov": prov, "eval_sha256": prov["data"]["eval_sha256"],
                      "eval_cache": prov["data"]["eval_cache"], "source": prov["data"]["source"], "dir": d}
    return out


#: a predicted joint farther than this from the camera (metres) is not a hand in metres
MAX_COORDINATE_M = 1000.0


def run_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The ``provenance`` block of a run's ``metrics.json``, checked for what the benchmark's
    tables read: ``data.eval_cache``, ``data.eval_sha256`` and ``data.source`` (strings) and
    ``config`` (a mapping; ``{}`` where absent). Anything else is a ``ValueError`` naming the file
    and the field."""
    from ..results import read_json

    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with a 'provenance' field, got a {type(data).__name__}")
    prov = data.get("provenance")
    if not isinstance(prov, dict):
        raise ValueError(f"{path}: field 'provenance' missing or not an object")
    block = prov.get("data")
    if not isinstance(block, dict):
        raise ValueError(f"{path}: field 'provenance.data' missing or not an object (it names the run's labels)")
    for k in ("eval_cache", "eval_sha256", "source"):
        if not isinstance(block.get(k), str) or not block[k]:
            raise ValueError(f"{path}: field 'provenance.data.{k}' missing or not a string, got {block.get(k)!r}")
    cfg = prov.get("config", {})
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: field 'provenance.config' is not an object, got {type(cfg).__name__}")
    return {**prov, "config": cfg}


def run_controls(name: str = "source_val", appearance: str = "glove", eval_cache: str | None = None,
                 source_cache: str | None = None, results_root: str = "results", preset: str = "cpu",
                 n_boot: int = 2000) -> Path:
    """Score every arm of set ``name`` (:data:`SETS`) per image, build the controls on the no-BMC run's 2D,
    validate each metric x condition, and write ``tables/controls_<name>.{csv,md}`` (plus the arms'
    metric values with paired intervals, and the power analysis). The caches default to those the
    no-BMC run recorded (its evaluation labels, its 3D training set); labels are checked by sha256."""
    import pandas as pd

    from ..data.cache import PreparedCache
    from ..results import provenance, write_text_atomic
    from .report import frame_markdown, write_table

    if name not in SETS and name != "v3":
        raise ValueError(f"unknown set {name!r}; choose from {[*SETS, 'v3']}")
    spec = SETS[name] if name in SETS else benchmark_set(appearance)
    names = {"appearance": appearance, "preset": preset}
    roles = dict(spec["roles"])
    pattern = str(Path(results_root) / spec["runs"])
    runs = {role: load_run_predictions(pattern, run, spec["seeds"], **names) for role, run in roles.items()}
    runs.update({c: load_run_predictions(pattern, c, spec["seeds"], **names) for c in spec["candidates"]})
    seeds = sorted(set.intersection(*(set(runs[r]) for r in roles)))
    if not seeds:
        raise FileNotFoundError(f"set {name!r}: no seed has all of {list(roles.values())} under "
                                f"{pattern.format(run='*', seed='*', **names)}")
    first = runs["base"][seeds[0]]
    eval_cache = eval_cache or first["eval_cache"]
    source_cache = source_cache or first["source"]
    ev, src = PreparedCache(eval_cache), PreparedCache(source_cache)
    gt_xyz, gt_uv, K = (ev.annotations[k].astype(np.float64) for k in ("xyz", "uv", "K"))
    stats = source_stats(src.annotations["xyz"][src.annotations["has_3d"]].astype(np.float64))
    sha = ev.meta["annotations_sha256"]
    for arm, by_seed in runs.items():
        for s, r in by_seed.items():
            if r["eval_sha256"] != sha:
                raise ValueError(f"{name}: run {arm} seed {s} was evaluated on other labels than {eval_cache} "
                                 f"({r['eval_sha256'][:12]} vs {sha[:12]})")
            if len(r["xyz"]) != len(gt_xyz):  # never broadcast one pose over every image
                raise ValueError(f"{r['dir'] / 'predictions.npz'}: {len(r['xyz'])} poses for the {len(gt_xyz)} "
                                 f"target-test images of {eval_cache}")

    cache: dict[tuple[str, int], dict[str, np.ndarray]] = {}

    def metrics(xyz, uv, key: tuple[str, int] | None = None):
        if key is None:
            return per_image_metrics(xyz, gt_xyz, uv, gt_uv)
        if key not in cache:  # a run's per-image metrics, computed once for the values and the power rows
            cache[key] = per_image_metrics(xyz, gt_xyz, uv, gt_uv)
        return cache[key]

    per: dict[str, dict[str, list]] = {}

    def add(arm: str, m: dict[str, np.ndarray]) -> None:
        for k, v in m.items():
            per.setdefault(arm, {}).setdefault(k, []).append(v)

    for s in seeds:
        base = runs["base"][s]
        for arm in ("base", "oracle", "source_only"):
            r = runs[arm][s]
            add(arm, metrics(r["xyz"], r["uv"], (arm, s)))
            add(f"flat_on:{arm}", metrics(control_poses(r["uv"], K, gt_xyz, stats)["flat_const"], r["uv"]))
        ctrl = control_poses(base["uv"], K, gt_xyz, stats)
        for c, xyz in ctrl.items():  # the controls on the no-BMC run's 2D share its flat hand
            add(c, metrics(xyz, base["uv"]))
            add(f"flat_on:{c}", metrics(ctrl["flat_const"], base["uv"]))
    arrays = {arm: {k: np.stack(v) for k, v in m.items()} for arm, m in per.items()}
    rows = validate(arrays, n_boot=n_boot)
    prov = provenance(made_by="bmc controls", set=name, appearance=appearance, seeds=seeds, eval_cache=eval_cache,
                      eval_sha256=sha, source_cache=source_cache)
    valid = pd.DataFrame(rows)
    # the arms' values: each metric's mean and its paired reduction vs the no-BMC run
    vals = []
    cands = [c for c in spec["candidates"] if all(s in runs[c] for s in seeds)]
    cand_arrays = {c: {k: np.stack([metrics(runs[c][s]["xyz"], runs[c][s]["uv"], (c, s))[k] for s in seeds])
                       for k in METRICS} for c in cands}
    for arm, m in {**{a: arrays[a] for a in ("base", "oracle", "source_only", *POSITIVE[1:], *NEGATIVE[1:])},
                   **cand_arrays}.items():
        for k in METRICS:
            r = paired_reduction(m[k], arrays["base"][k], n_boot)
            vals.append({"arm": arm, "metric": k, "mean": float(m[k].mean()), "vs_no_bmc_pct": 100 * r["reduction"],
                         "lo_pct": 100 * r["lo"], "hi_pct": 100 * r["hi"], "every_seed": r["every_seed"]})
    values = pd.DataFrame(vals)
    # power: the seed-to-seed spread of each arm's paired difference from the no-BMC run, and the
    # per-image spread, against a 25% reduction of the no-BMC run's mean
    # (every seed where both the arm and the no-BMC run exist: a candidate may have more seeds than the controls)
    pw = []
    keys = ("depth_norm_mm", "depth_mm", "pa_mpjpe_mm", "root_depth_mm")
    for arm in ("oracle", *[c for c in spec["candidates"] if runs[c]]):
        both = sorted(set(runs[arm]) & set(runs["base"]))
        if not both:
            continue
        am = [metrics(runs[arm][s]["xyz"], runs[arm][s]["uv"], (arm, s)) for s in both]
        bm = [metrics(runs["base"][s]["xyz"], runs["base"][s]["uv"], ("base", s)) for s in both]
        for k in keys:
            d = np.stack([a[k] - b[k] for a, b in zip(am, bm)])  # (seeds, images)
            base_mean = float(np.mean([b[k].mean() for b in bm]))
            pw.append({"arm": arm, "metric": k, "seeds": str(both), "mean_diff": float(d.mean()),
                       **power(d.mean(1), base_mean, float(np.sqrt(d.var(1, ddof=1).mean())), d.shape[1])})
    power_df = pd.DataFrame(pw)
    stem = Path(results_root) / "tables" / (f"controls_{name}-{appearance}" + ("" if preset == "cpu" else f"_{preset}")
                                             if name == "v3" else f"controls_{name}")
    write_table(values, stem.with_name(stem.name + "_values"), "# Arm values\n\n" + frame_markdown(values))
    legend = "\n".join(f"- `{k}`: {v[0]}" for k, v in CONDITIONS.items()) + (
        "\n- `n/i`: the control cannot judge this cell (it equals what it is compared with, or has no error "
        "by construction); intervals: the wider of an image bootstrap and a t-interval over seeds")
    md = (f"# Controls: {spec['where']}\n\n"
          f"Seeds {seeds}; {len(gt_xyz)} images; labels `{eval_cache}` (annotations sha256 {sha[:12]}, the "
          f"`eval_sha256` of every run read). Positive controls "
          f"(must pass): {', '.join(POSITIVE)}; negative controls (must fail): {', '.join(NEGATIVE)}. A metric x "
          f"condition is **valid** (may be pre-registered) only if all positives pass and all negatives fail.\n\n"
          f"{legend}\n\nSource statistics for the no-image controls: median distance {stats.distance_m:.3f} m, "
          f"median reference bone {1000 * stats.scale_m:.1f} mm (from `{source_cache}`).\n\n" + frame_markdown(valid)
          + "\n\n## Each arm: mean, and paired reduction vs the no-BMC run (95% interval over images and seeds)\n\n"
          + frame_markdown(values)
          + "\n\n## Power: seeds and images needed to see a 25% paired reduction (one-sided 2.5% as the 95% intervals, power 80%, t quantiles over seeds)\n\n"
          "`seed_sd`: the seed-to-seed spread of the arm's mean paired difference from the no-BMC run (needs 2 seeds "
          "or more); `images_sd`: the per-image spread of that difference within a seed.\n\n"
          + frame_markdown(power_df) + f"\n\nMade by `bmc controls --set {name} --appearance {appearance}` at commit {prov['git_commit']}, "
          f"{prov['time']}.")
    path = write_table(valid, stem, md)
    write_text_atomic(stem.with_suffix(".json"), json.dumps({"provenance": prov, "valid": rows, "values": vals,
                                                             "power": pw}, indent=1))
    return path


def add_cli_arguments(p) -> None:
    p.add_argument("--set", default="source_val", choices=[*SETS, "v3"], help="which runs (v3: results/benchmark_v3.yaml)")
    p.add_argument("--appearance", default="glove", choices=("skin", "glove", "markers"), help="the data level")
    p.add_argument("--eval-cache", help="the labels the runs were evaluated on (default: the set's data folder)")
    p.add_argument("--source-cache", help="the 3D-labelled source set for the no-image controls' statistics")
    p.add_argument("--preset", default="cpu", help="the runs' preset (their names say it)")
    p.add_argument("--results", default="results", help="where the runs' predictions are and the table goes")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap samples")


def cli_main(a) -> int:
    if a.bootstrap < 1:
        raise ValueError(f"--bootstrap: expected an integer >= 1 (resamples of the images), got {a.bootstrap}")
    path = run_controls(a.set, a.appearance, a.eval_cache, a.source_cache, a.results, a.preset, a.bootstrap)
    print(Path(path).read_text())
    return 0
