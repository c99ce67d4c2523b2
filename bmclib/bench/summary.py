"""The README's benchmark-v3 sections, written from the committed tables so that their numbers cannot go stale.

``bmc summary`` rewrites two marked sections from ``results/tables/``:

    README.md            between ``<!-- summary:v3 begin -->`` and ``<!-- summary:v3 end -->``
    results/README.md    between ``<!-- summary:v3-runs begin -->`` and ``<!-- summary:v3-runs end -->``

from the verdict (``tables/benchmark_v3-glove.json``, ``bmc verdict``), the controls on v3's runs
(``tables/controls_v3-glove.json``, ``bmc controls --set v3``), the image-level regime map
(``tables/regime_map_images.csv``, ``bmc verdict --map``), the keypoint map (``tables/regime_map.csv``)
and which runs have metrics under ``results/runs/``. ``bmc summary --check`` changes nothing and exits 1
when a section differs from what the tables say (the executed-notebook tests run it). Every sentence that
carries a number is written here, once; the prose around the sections is the README's own.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MARKERS", "sections", "write_sections", "add_cli_arguments", "cli_main"]

#: file (relative to the checkout) -> the section's marker name
MARKERS = {"README.md": "v3", "results/README.md": "v3-runs"}
_FROZEN_AT = "14d4eb8"  # the commit that froze results/benchmark_v3.yaml (git log -- results/benchmark_v3.yaml)


def _read_json(path: Path, need: dict[str, tuple[str, ...]] | None = None) -> dict:
    """A JSON object from ``path``, with the fields ``need`` names (``{"": top-level keys, "verdict":
    its keys}``); anything else a ``ValueError`` naming the file and the field."""
    from ..results import read_json

    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got a {type(data).__name__}")
    for block, keys in (need or {}).items():
        obj = data if not block else data.get(block)
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: field {block!r} missing or not an object")
        for k in keys:
            if k not in obj:
                raise ValueError(f"{path}: field '{block + '.' if block else ''}{k}' missing")
    return data


def _read_csv(path: Path, columns: tuple[str, ...] = ()):
    """A table from ``path`` with ``columns``; a broken, empty or short file is a ``ValueError`` naming it."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CSV table ({type(e).__name__}: {str(e).strip()[:120]})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: column(s) {missing} missing (has {list(df.columns)[:8]})")
    if df.empty:
        raise ValueError(f"{path}: no rows")
    return df


VERDICT_FIELDS = {"": ("verdict",), "verdict": ("verdict", "seeds", "seeds_registered", "metric", "sentence")}
CONTROLS_FIELDS = {"": ("valid", "provenance"), "provenance": ("seeds",)}


def _runs_present(bench, results: Path, preset: str) -> dict[str, dict[str, list[int]]]:
    """{level: {run: [seeds with results/runs/<name>/metrics.json]}}"""
    from .runs import run_name

    seeds = sorted(set(bench.test["seeds"]) | set(bench.test.get("report_seeds", [])))
    return {lvl: {run: [s for s in seeds if (results / "runs" / run_name(preset, run, s, bench.run_bench_name(lvl))
                                              / "metrics.json").is_file()] for run in bench.runs}
            for lvl in bench.levels}


def _seeds(xs) -> str:
    return ", ".join(map(str, xs)) if xs else "none"


def sections(results_root: str | Path = "results", benchmark: str | Path | None = None,
             preset: str = "cpu") -> dict[str, str]:
    """The two sections' text (without markers), keyed by file, from the tables under ``results_root``."""

    from .benchmark import load_benchmark

    R = Path(results_root)
    bench = load_benchmark(benchmark or R / "benchmark_v3.yaml")
    level = bench.test.get("level", bench.levels[0])
    stem = f"benchmark_{bench.run_bench_name(level)}"
    made_by = {f"tables/{stem}.json": "bmc verdict", f"tables/{stem}.md": "bmc verdict",
               f"tables/controls_{bench.run_bench_name(level)}.json": f"bmc controls --set {bench.name} --appearance {level}",
               "tables/regime_map_images.csv": "bmc verdict --map", "tables/regime_map.csv": "bmc regime"}
    for need, cmd in made_by.items():
        if not (R / need).is_file():
            raise FileNotFoundError(f"{R / need}: missing; `{cmd}` writes it (bmc summary reads it)")
    v = _read_json(R / f"tables/{stem}.json", VERDICT_FIELDS)
    res: dict[str, Any] = v["verdict"]
    seeds, registered = res["seeds"], res["seeds_registered"]
    complete = res["verdict"] in ("passes", "fails")
    table = "\n".join(line for line in (R / f"tables/{stem}.md").read_text().splitlines() if line.startswith("|"))
    ctrl = _read_json(R / f"tables/controls_{bench.run_bench_name(level)}.json", CONTROLS_FIELDS)
    if not isinstance(ctrl["valid"], list) or not all(isinstance(r, dict) and {"metric", "condition", "valid"} <= set(r)
                                                      for r in ctrl["valid"]):
        raise ValueError(f"{R / f'tables/controls_{bench.run_bench_name(level)}.json'}: field 'valid' must list "
                         f"{{metric, condition, valid}} rows")
    valid = {(r["metric"], r["condition"]): r for r in ctrl["valid"]}
    ok = [bool(valid.get((res["metric"], c), {}).get("valid")) for c in bench.test["conditions"]]
    ctrl_seeds = ctrl["provenance"]["seeds"]
    mp = _read_csv(R / "tables/regime_map_images.csv", ("level", "seed", "base_2d_pct", f"{res['metric']}_reduction_pct",
                                                         "pa_mpjpe_mm_reduction_pct"))
    mp_test = mp[mp["level"] == level] if "level" in mp else mp
    per_seed = ", ".join(f"{r:+.1f}%" for r in mp_test[f"{res['metric']}_reduction_pct"])
    per_seed_pa = ", ".join(f"{r:+.1f}%" for r in mp_test["pa_mpjpe_mm_reduction_pct"])
    err = mp_test["base_2d_pct"]
    kp = _read_csv(R / "tables/regime_map.csv", ("population", "method", "limits", "reduction_pct", "noise_px"))
    kp = kp[(kp.population == "20_hands") & (kp.method == "lifter") & (kp.limits == "source_quantile")]
    if kp.empty:
        raise ValueError(f"{R / 'tables/regime_map.csv'}: no rows for the lifter on 20_hands with source_quantile limits")
    kp_lo, kp_hi = kp.reduction_pct.min(), kp.reduction_pct.max()
    kp_end = _map_end(kp)
    commits = ", ".join(c[:7] for c in v["provenance"]["commits"])
    present = _runs_present(bench, R, preset)
    test_runs = [bench.test[k] for k in ("base_run", "bmc_run", "oracle_run")]
    missing_test = [s for s in registered if s not in seeds]
    others = [(lvl, run) for lvl in bench.levels for run in bench.runs
              if not (lvl == level and (run in test_runs or run == "1_source3d"))]
    report = bench.test.get("report_seeds", [])
    todo: dict[str, list[str]] = {}
    for lvl, run in others:
        if not set(report) <= set(present[lvl][run]):
            todo.setdefault(lvl, []).append(run)
    not_yet = [("every run" if len(rs) == len(bench.runs) else ", ".join(rs)) + f" at the {lvl} level"
               for lvl, rs in todo.items()]
    others_line = _others_line(R, bench, level, res, preset)
    other_levels = [lvl for lvl in bench.levels if lvl != level]
    level_lines = [_level_paragraph(R, bench, lvl, mp, kp, test_res=res) for lvl in other_levels]
    gap_ok = res["conditions"].get("closes_25pct_of_gap", {}).get("passed")  # None: not evaluated
    red = res.get("reduction")

    if complete:
        head = (f"## Benchmark v3: the pre-registered test {res['verdict']} — all {len(registered)} seeds\n\n")
        status = f"**The verdict** ([`results/tables/{stem}.md`](results/tables/{stem}.md), `bmc verdict`):"
    else:
        head = (f"## Benchmark v3: the pre-registered test — {len(seeds)} of {len(registered)} seeds trained, "
                "no verdict yet\n\n")
        status = (f"**Interim numbers, not a verdict** ([`results/tables/{stem}.md`](results/tables/{stem}.md), "
                  "`bmc verdict`):")
    map_reading = ("not measured yet" if red is None else
                   "more than the map's lifter showed: the image network does not sit where the keypoint map put it"
                   if red["lo"] > kp_hi / 100 else
                   "less than the map's lifter showed" if red["hi"] < kp_lo / 100 else
                   "about what the map's lifter showed")
    cond_b = ("not evaluated yet" if gap_ok is None else
              ("met" if complete else "met so far") if gap_ok else ("not met" if complete else "not met so far"))
    readme = f"""{head}Benchmark v3 ([`results/benchmark_v3.yaml`](results/benchmark_v3.yaml), frozen at {_FROZEN_AT} before any
v3 run was trained) asks one question at the **{level}** level: does BMC (run 3) beat the same
training without it (run 2) on the **normalised depth error** (`{res['metric']}`: the root-relative depth
with the predicted reference bone scaled to its true length), paired over the target-test images and
**{len(registered)} seeds**, with (a) the paired reduction's 95% interval above 0 and (b) at least a quarter of the
run 2 → oracle gap closed, with the gap share's 95% interval above 0? (Intervals: the wider of an image bootstrap
and a t-interval over seeds.) Both conditions were validated on positive and negative controls before
the freeze (how v3 was set up: below). The runs: cpu preset, 3,000 steps, `bmc experiment --benchmark
results/benchmark_v3.yaml --level {level} --jobs 2`, trained at commit(s) {commits}; seeds {_seeds(seeds)} have the test's runs 2, 3 and 4.
{status}

{table}

{res['sentence']}

The table's rows average the seeds each run has; the test's numbers (the sentence) use only the seeds with
runs 2, 3 and 4. Positive reduction: BMC better.

{others_line}

**The keypoint map, read as a prediction** (notebook 03; `results/tables/regime_map.md`, made before v3):
on the 20-hand population with limits from source quantiles, a keypoint lifter trained with BMC on noisy 2D
moved the root-relative depth — scored with the true reference bone, as `{res['metric']}` is — by
{kp_lo:.1f}–{kp_hi:.1f}% at 0–{kp_end:.1f}% 2D error; its large gains were on the hand's absolute depth, which this
metric leaves out. So the map said the effect here should be small and that the gap condition (b) would fail
(this reading was written down after the first runs' training logs were seen, not before). **Where the image network sits**
([`results/tables/regime_map_images.md`](results/tables/regime_map_images.md), `bmc verdict --map`): its 2D
error is {err.min():.1f}–{err.max():.1f}% of the crop, and BMC's paired reduction of the normalised depth per
seed is {per_seed} — {map_reading}{'' if complete else ' (interim)'}; condition (b) is {cond_b}. The
comparison is rough: the map's lifter is measured against the source-only lifter, the image runs against run 2,
which was trained on the target's 2D too.

**Controls on v3's own runs** ([`results/tables/controls_{bench.run_bench_name(level)}.md`](results/tables/controls_{bench.run_bench_name(level)}.md),
`bmc controls --set {bench.name} --appearance {level}`, seeds {_seeds(ctrl_seeds)}): the test's two cells are
{"valid there too (each cell's controls behave as a valid cell needs: see the table)" if all(ok) else
 "not both valid: " + ", ".join(f"{c} {'valid' if o else 'not valid'}" for c, o in zip(bench.test['conditions'], ok))
 + " — see the table"}.

{''.join(line + chr(10) * 2 for line in level_lines if line)}![v3 per seed: normalised depth error of runs 1-4](results/figures/{stem}.png)
![v3 on the regime map: BMC's paired effect against the network's 2D error](results/figures/regime_map_images.png)"""

    runs_md = f"""## Benchmark v3, part 2{'' if complete and not not_yet else ' (in progress)'}: the runs, the {'verdict' if complete else 'interim numbers'}, the image-level map

`bmc experiment --benchmark results/benchmark_v3.yaml --level {level} --runs 1_source3d 2_target2d 3_bmc_all
4_target3d_oracle --seeds {' '.join(map(str, registered))} --jobs 2` (two runs at a time, about 37 min a seed
on the 2-core machine; resumable from its checkpoints), trained at commit(s) {commits} from a clean tree (each run's
provenance names its commit). Seeds with
runs 2, 3 and 4: {_seeds(seeds)}{'' if not missing_test else f'; still to train: {_seeds(missing_test)}'}. The
tables were made from the runs' predictions by `bmc verdict --benchmark results/benchmark_v3.yaml --level
{level} --map` and `bmc controls --set {bench.name} --appearance {level}`.

{res['sentence']}

{table}

Per seed (`tables/regime_map_images.md`): BMC's paired reduction of the normalised depth is {per_seed}, of
PA-MPJPE {per_seed_pa}, with the no-BMC network's 2D at {err.min():.1f}–{err.max():.1f}% of the crop. The
keypoint map's lifter, at 0–{kp_end:.1f}% 2D error, moved the root-relative depth by {kp_lo:.1f}–{kp_hi:.1f}%.

Reported runs (seeds {_seeds(report)}, not part of the test): {' and '.join(not_yet) + ': not yet trained at all of these seeds' if not_yet
else 'all trained'}. """ + _refine_sentence(R, bench.run_bench_name(level), preset) + "".join(
        f"\n\n{_level_paragraph(R, bench, lvl, mp, kp, link='', test_res=res)}"
        + (" " + _refine_sentence(R, bench.run_bench_name(lvl), preset, missing_ok=True)).rstrip()
        + "".join(f"\n\n{t}" for t in [_table(R, bench, lvl)] if t)
        for lvl, line in zip(other_levels, level_lines) if line)
    return {"README.md": readme, "results/README.md": runs_md.rstrip()}


def _others_line(R: Path, bench, level: str, res: dict, preset: str) -> str:
    """Runs 3 vs 2 on the other metrics, over the test's seeds (from each run's metrics.json)."""
    from .runs import run_name

    seeds = res["seeds"]
    if not seeds:
        return ""
    mean = {}
    for run in (bench.test["base_run"], bench.test["bmc_run"]):
        ms = [json.loads((R / "runs" / run_name(preset, run, s, bench.run_bench_name(level)) / "metrics.json")
                         .read_text())["metrics"] for s in seeds]
        mean[run] = {k: float(np.mean([m[k] for m in ms])) for k in ("depth_norm_mm", "depth_mm", "root_depth_mm",
                                                                     "pa_mpjpe_mm", "epe_2d_px")}
    b, x = mean[bench.test["base_run"]], mean[bench.test["bmc_run"]]
    red = {k: 100 * (1 - x[k] / b[k]) for k in ("depth_norm_mm", "depth_mm", "root_depth_mm", "pa_mpjpe_mm")}

    def change(k: str, what: str) -> str:
        return f"{'lowers' if red[k] >= 0 else 'raises'} {what} (`{k}`) by {abs(red[k]):.1f}%"

    largest = max(red, key=red.get)
    return (f"On the other metrics (runs 2 and 3, means over seeds {_seeds(seeds)}), BMC "
            f"{change('depth_mm', 'the plain root-relative depth error')}, "
            f"{change('root_depth_mm', 'the hand distance error')} and {change('pa_mpjpe_mm', 'PA-MPJPE')}; the 2D "
            f"error goes from {b['epe_2d_px']:.2f} to {x['epe_2d_px']:.2f} px. "
            + ("" if "flat_on_bmc_mean" not in res else
               f"A flat hand (every joint at the root's depth, whatever the 2D) scores {res['flat_on_bmc_mean']:.2f} mm on "
               f"`{res['metric']}` "
               "(reported, not tested). ")
            + ("The gain is largest on the test's metric; why it exceeds the plain root-relative one is not yet known."
               if largest == res["metric"] else f"The gain is largest on `{largest}`."))


def _map_end(kp) -> float:
    """The keypoint map's largest 2D error, in % of its crop (its noise is per coordinate, in px)."""
    from .regime import RegimeConfig
    from .verdict import RAYLEIGH_MEAN

    return float(100 * RAYLEIGH_MEAN * kp["noise_px"].max() / RegimeConfig().image_size)


def _table(R: Path, bench, level: str) -> str:
    """The verdict table's rows at ``level`` (``tables/benchmark_<name>-<level>.md``), or ''."""
    f = R / "tables" / f"benchmark_{bench.run_bench_name(level)}.md"
    return "\n".join(x for x in f.read_text().splitlines() if x.startswith("|")) if f.is_file() else ""


def _level_paragraph(R: Path, bench, level: str, mp, kp, link: str = "results/", test_res: dict | None = None) -> str:
    """BMC at a level the test does not judge (v3's skin level), from its reported verdict file, its table,
    its controls and the image-level map (``mp``) beside the keypoint map's lifter (``kp``), compared with
    the test level's verdict (``test_res``); '' when the level has no verdict file yet."""
    import pandas as pd

    stem = f"benchmark_{bench.run_bench_name(level)}"
    f = R / "tables" / f"{stem}.json"
    if not f.is_file():
        return ""
    res = _read_json(f, VERDICT_FIELDS)["verdict"]
    red = res.get("reduction")
    head = (f"**At the {level} level** (reported, not tested: no claim was pre-registered here; the same comparison "
            f"on the report seeds; [`{link}tables/{stem}.md`]({link}tables/{stem}.md), `bmc verdict --level {level}`): ")
    if red is None or res["verdict"] != "reported":  # too few seeds yet, or runs off the frozen settings
        return head + res["sentence"].split("): ", 1)[-1] if red is None else head + res["sentence"]
    at = mp[(mp["level"] == level) & mp["seed"].isin(res["seeds"])] if "level" in mp else mp.iloc[:0]
    n, want = len(res["seeds"]), len(res["seeds_registered"])
    text = head
    rows = pd.read_csv(R / "tables" / f"{stem}.csv").set_index("run") if (R / "tables" / f"{stem}.csv").is_file() \
        else None
    b2 = None
    if rows is not None and {res["base_run"], res["bmc_run"]} <= set(rows.index):
        b2, x2 = (rows.loc[res[r], ["epe_2d_px", "2d_pct_of_crop"]] for r in ("base_run", "bmc_run"))
        text += (f"the 2D error is {b2.epe_2d_px:.2f} px ({b2['2d_pct_of_crop']:.1f}% of the crop) without BMC and "
                 f"{x2.epe_2d_px:.2f} px with it; ")
    text += (f"run {res['bmc_run']} {res['bmc_mean']:.2f} mm vs run {res['base_run']} {res['base_mean']:.2f} mm on "
             f"`{res['metric']}` (oracle {res['oracle_mean']:.2f}), paired reduction {100 * red['reduction']:.1f}% "
             f"(95% interval {100 * red['lo']:.1f} to {100 * red['hi']:.1f}%, {n} seeds"
             + ("" if n == want else f" of {want}: interim numbers") + ")")
    if rows is not None and res["bmc_run"] in rows.index:
        text += f"; on PA-MPJPE {rows.loc[res['bmc_run'], 'pa_mpjpe_mm_vs_base_pct']} (%, 95% interval)"
    if len(at):
        pct = {c: ", ".join(f"{r:+.1f}%" for r in at[f"{c}_reduction_pct"]) for c in (res["metric"], "pa_mpjpe_mm")}
        text += (f"; per seed ({_seeds(at['seed'].tolist())}) {pct[res['metric']]} on `{res['metric']}`, "
                 f"{pct['pa_mpjpe_mm']} on PA-MPJPE")
    if rows is not None:  # the term ablations and any other BMC run beside the test's
        col = f"{res['metric']}_vs_base_pct"
        extra = [r for r in rows.index if r not in (res["base_run"], res["bmc_run"])
                 and bench.runs.get(r, {}).get("use_bmc") and isinstance(rows.loc[r, col], str)]
        if extra:
            text += (f"; the other BMC runs on `{res['metric']}`: "
                     + ", ".join(f"{r} (BMC terms {bench.runs[r].get('bmc_terms', '?')}) {rows.loc[r, col]} (seeds "
                                 f"{rows.loc[r, 'seeds']})" for r in extra)
                     + " (%, 95% interval; exploratory: several comparisons, none pre-registered)")
    gap, conds = res.get("gap_share"), res.get("conditions", {})
    if gap:
        failing = [c for c, v in conds.items() if not v["passed"]]
        text += (f". Run {res['base_run']} → oracle gap closed: {100 * gap['share']:.0f}% ({100 * gap['lo']:.0f} to "
                 f"{100 * gap['hi']:.0f}%); " + ("the test's conditions would all pass here" if not failing else
                                                  f"{' and '.join(failing)} would fail here"))
    cf = R / "tables" / f"controls_{bench.run_bench_name(level)}.json"
    if cf.is_file():
        valid = {(r["metric"], r["condition"]): bool(r["valid"]) for r in _read_json(cf, {"": ("valid",)})["valid"]
                 if isinstance(r, dict) and {"metric", "condition", "valid"} <= set(r)}
        ok = [valid.get((res["metric"], c)) for c in bench.test["conditions"]]
        text += (f". On this level's controls (`bmc controls --set {bench.name} --appearance {level}`) the test's "
                 + ("cells are all valid" if all(o is True for o in ok) else "cells are " + ", ".join(
                     f"{c} {'not evaluated' if o is None else 'valid' if o else 'not valid'}"
                     for c, o in zip(bench.test["conditions"], ok))))
    so_far = "" if n == want else " so far"
    t_red = (test_res or {}).get("reduction")
    there = "" if t_red is None else \
        f" (the {bench.test.get('level', bench.levels[0])} level's was {100 * t_red['reduction']:.1f}%)"
    side = ("lies above 0: BMC helps here" if red["lo"] > 0 else "lies below 0: BMC hurts here" if red["hi"] < 0
            else f"covers 0: neither a gain nor a loss is shown here; reductions above {100 * red['hi']:.1f}% are "
                 f"excluded{there}")
    text += f". Run {res['bmc_run']}'s interval {side}{so_far}."
    if test_res and "oracle_mean" in test_res:
        text += (f" The oracle is {res['base_mean'] - res['oracle_mean']:.1f} mm better than run {res['base_run']} here "
                 f"and {test_res['base_mean'] - test_res['oracle_mean']:.1f} mm at the "
                 f"{bench.test.get('level', bench.levels[0])} level: the room BMC could take.")
    last = kp.sort_values("noise_px").iloc[-1]
    end = _map_end(kp)
    sd = f"sd over {int(last['seeds'])} seeds" if "seeds" in last else "sd over seeds"
    k_lo, k_hi = kp["reduction_pct"].min() / 100, kp["reduction_pct"].max() / 100
    text += (f" The keypoint map's last point is at {end:.1f}% 2D error (its lifter moved the root-relative depth by "
             f"{last['reduction_pct']:+.1f}%, {sd} {last['reduction_pct_std']:.1f})"
             + (f"; this level's {b2['2d_pct_of_crop']:.1f}% lies beyond it" if b2 is not None and
                b2["2d_pct_of_crop"] > end else "")
             + "; the benchmark file, frozen before any v3 run, reported this level beside the test as one 'where the "
             "regime map predicts no gain'")
    if red["lo"] > 0:
        return text + ": BMC gained here, against that expectation."
    if red["hi"] < k_lo:
        return text + (f": BMC did worse than even the map's smallest value ({100 * k_lo:.1f}%), the interval lying "
                       "wholly below it.")
    if t_red is not None and t_red["lo"] > k_hi:  # the interval overlaps the map's range, which missed the test level
        return text + (f". The same map predicted {100 * k_lo:.1f}–{100 * k_hi:.1f}% up to {end:.1f}% 2D error, less "
                       f"than BMC gained at the {bench.test.get('level', bench.levels[0])} level "
                       f"({100 * t_red['reduction']:.1f}%), so agreeing with it here is weak evidence for it.")
    return text + "."


def _refine_sentence(R: Path, bench_name: str, preset: str = "cpu", missing_ok: bool = False,
                     base: str = "2_target2d", bmc: str = "3_bmc_all") -> str:
    """What test-time refinement (``bmc tables --refine``) did to the test's runs, from its CSV."""

    f = R / "tables" / f"refine_{bench_name}_{preset}.csv"
    if not f.is_file():
        if missing_ok:
            return ""
        return (f"The refine study on v3 (`bmc tables --refine 2_target2d 3_bmc_all --bench {bench_name}`) is not "
                "run yet.")
    raw = _read_csv(f, ("run", "stage", "seed", "depth_norm_mm"))
    d = raw.groupby(["run", "stage"])["depth_norm_mm"].mean()
    n = raw.groupby("run")["seed"].nunique()
    after = "after (prediction root)"
    parts = [f"run {run} {d[(run, 'before')]:.2f} → {d[(run, after)]:.2f} mm ({n[run]} seeds)"
             for run in dict.fromkeys(i[0] for i in d.index) if (run, after) in d and (run, "before") in d]
    same_seeds = set(raw.loc[raw.run == base, "seed"]) == set(raw.loc[raw.run == bmc, "seed"])
    if all((r, st) in d for r in (base, bmc) for st in ("before", after)) and same_seeds:
        a, b, c = d[(base, after)], d[(bmc, "before")], d[(bmc, after)]
        parts.append(f"refining run {base} alone ({a:.2f} mm) " + (
            f"beats run {bmc} before and after refinement ({b:.2f} / {c:.2f} mm)" if a < min(b, c) else
            f"does not reach run {bmc} refined ({c:.2f} mm)" if a > c else
            f"lies between run {bmc} refined ({c:.2f} mm) and unrefined ({b:.2f} mm)") + " (no interval: reported)")
    if "unrefined" in raw and raw["unrefined"].any():
        first = raw[raw.stage == "before"].groupby("run")[["unrefined", "images"]].sum()
        parts.append("scored unrefined, a joint behind the camera: " + ", ".join(
            f"run {r} {k.unrefined} of {k.images} predictions" for r, k in first.iterrows() if k.unrefined))
    return (f"**Test-time refinement** (`bmc refine`, 200 steps along the camera rays with the run's limits, the "
            f"hand kept at its predicted root; [`tables/{f.stem}.md`](tables/{f.stem}.md), `bmc tables --refine "
            f"... --bench {bench_name}`) on the normalised depth: " + "; ".join(parts) + ".")


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- summary:{name} begin -->", f"<!-- summary:{name} end -->"


def write_sections(root: str | Path = ".", results_root: str | Path | None = None, check: bool = False) -> list[str]:
    """Replace the marked sections of ``root``'s README files (``check``: only compare). Returns the files
    that differed."""
    from ..results import write_text_atomic

    import re

    root = Path(root)
    R = Path(results_root or root / "results")
    try:
        texts = sections(R)
    except (KeyError, TypeError, IndexError, AttributeError) as e:  # a field the readers above do not check
        raise ValueError(f"a table under {R / 'tables'} lacks a field the README sections read "
                         f"({type(e).__name__}: {e}); rebuild it with the command its Made-by line names") from None
    for rel, text in texts.items():  # never write 'nan' into the README: a table holds a NaN
        hit = re.search(r"(?<![\w`/.])nan(?![\w`])", text, re.IGNORECASE)
        if hit:
            around = text[max(0, hit.start() - 80): hit.end() + 40].replace("\n", " ")
            raise ValueError(f"{rel}: the section would say 'nan' (... {around} ...): a table under {R / 'tables'} "
                             f"holds NaN there; nothing was written")
    new_texts = {}
    for rel, name in MARKERS.items():  # every file is checked before any is written
        path = root / rel
        old = path.read_text()
        begin, end = _markers(name)
        if old.count(begin) != 1 or old.count(end) != 1 or old.index(begin) > old.index(end):
            raise ValueError(f"{path}: needs one {begin!r} line before one {end!r} line around its v3 section")
        i, j = old.index(begin) + len(begin), old.index(end)
        new = old[:i] + "\n" + texts[rel] + "\n" + old[j:]
        if new != old:
            new_texts[rel] = new
    if not check:
        for rel, new in new_texts.items():
            write_text_atomic(root / rel, new)
    return list(new_texts)


def add_cli_arguments(p) -> None:
    p.add_argument("--root", default=None, help="the checkout (default: this one)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a section differs from the tables")


def cli_main(a) -> int:
    from .checkout import checkout

    root = Path(a.root) if a.root else checkout("bmc summary")
    differ = write_sections(root, check=a.check)
    if a.check:
        print("up to date" if not differ else f"differs from the tables: {', '.join(differ)} (run `bmc summary`)")
        return 1 if differ else 0
    print(f"rewrote {', '.join(differ)}" if differ else "already up to date")
    return 0
