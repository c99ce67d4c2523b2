"""The v3 verdict (bmclib.bench.verdict): on fake runs whose answer is known, it passes a run that
is better, fails one that is not, and calls too few seeds incomplete."""
import json
import re

import numpy as np
import pytest

from bmclib.bench.benchmark import load_benchmark
from bmclib.bench.verdict import judge, level_runs, verdict_table
from bmclib.bench.runs import run_name
from bmclib.data.cache import PreparedCache

from test_v3 import V3_MINI


@pytest.fixture(scope="module")
def world(v9_world):
    return v9_world


def _fake_runs(root, results, noise: dict[str, float], seeds=(0, 1, 2), steps: int = 3000, level: str = "glove",
               uv_noise: dict[str, float] | None = None):
    """Predictions = the truth with root-relative depth noise of ``noise[run]`` metres, trained (their
    provenance says) with the benchmark's frozen settings and the cpu preset's ``steps``."""
    BENCH = load_benchmark(root / "v9.yaml")
    ev = PreparedCache(root / "data" / "cache" / "evaluation")
    gt = ev.annotations["xyz"].astype(np.float64)
    for run, sd in noise.items():
        for s in seeds:
            g = np.random.default_rng(100 * s + len(run))
            xyz = gt.copy()
            xyz[:, 1:, 2] += g.normal(0, sd, xyz[:, 1:, 2].shape)
            d = results / "runs" / run_name("cpu", run, s, f"v9-{level}")
            d.mkdir(parents=True, exist_ok=True)
            uv = ev.annotations["uv"] + g.normal(0, (uv_noise or {}).get(run, 0.0), ev.annotations["uv"].shape)
            np.savez(d / "predictions.npz", xyz=xyz.astype(np.float32), uv=uv.astype(np.float32))
            cfg = {**BENCH.train_overrides(32, 3000), "steps": steps,
                   **{k: v for k, v in BENCH.runs[run].items() if k in ("use_bmc", "bmc_terms")}}
            prov = {"git_commit": "abc", "config": cfg, "data": {"eval_cache": str(root / "data" / "cache" / "evaluation"),
                                                  "eval_sha256": ev.meta["annotations_sha256"],
                                                  "source": str(root / "data" / "cache" / "training")}}
            (d / "metrics.json").write_text(json.dumps({"provenance": prov}))


def test_a_better_run_passes_an_equal_one_fails_and_missing_seeds_are_incomplete(world, tmp_path):
    bench = load_benchmark(world / "v9.yaml")
    good = tmp_path / "good"
    _fake_runs(world, good, {"2_target2d": 0.012, "3_bmc_all": 0.006, "4_target3d_oracle": 0.002, "1_source3d": 0.02})
    res = judge(bench, level_runs(bench, "glove", good)[0], n_boot=300)
    assert res["verdict"] == "passes" and res["conditions"]["better_than_no_bmc"]["passed"]
    assert 0.3 < res["reduction"]["reduction"] < 0.7 and res["seeds"] == [0, 1, 2]

    same = tmp_path / "same"  # BMC no better than no BMC: the same noise
    _fake_runs(world, same, {"2_target2d": 0.012, "3_bmc_all": 0.012, "4_target3d_oracle": 0.002})
    res = judge(bench, level_runs(bench, "glove", same)[0], n_boot=300)
    assert res["verdict"] == "fails" and not res["conditions"]["better_than_no_bmc"]["passed"]

    few = tmp_path / "few"
    _fake_runs(world, few, {"2_target2d": 0.012, "3_bmc_all": 0.006, "4_target3d_oracle": 0.002}, seeds=(0, 1))
    res = judge(bench, level_runs(bench, "glove", few)[0], n_boot=300)
    assert res["verdict"] == "incomplete" and "2 of 3" in res["sentence"] and "not a verdict" in res["sentence"]

    path = verdict_table(world / "v9.yaml", "glove", good, n_boot=300)
    md = path.read_text()
    assert "The pre-registered test passes" in md and (good / "figures" / "benchmark_v9-glove.png").is_file()
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved["verdict"]["verdict"] == "passes" and saved["provenance"]["level"] == "glove"
    with pytest.raises(FileNotFoundError, match="no predictions of benchmark v9 at level 'skin'"):
        verdict_table(world / "v9.yaml", "skin", good)


def test_another_level_is_reported_on_its_report_seeds_never_tested(world, tmp_path):
    import pandas as pd

    from bmclib.bench.summary import _level_paragraph

    (world / "v9r.yaml").write_text(V3_MINI.replace("seeds: [0, 1, 2]}", "seeds: [0, 1, 2], report_seeds: [0, 2, 3]}"))
    bench = load_benchmark(world / "v9r.yaml")
    noise = {"2_target2d": 0.012, "3_bmc_all": 0.006, "4_target3d_oracle": 0.002}
    res = tmp_path / "res"
    _fake_runs(world, res, noise, seeds=(0, 1, 2, 3), level="skin", uv_noise={"3_bmc_all": 1.0})
    v = json.loads(verdict_table(bench.path, "skin", res, n_boot=300).with_suffix(".json").read_text())["verdict"]
    table = {line.split(" | ")[0].strip("| "): line.split(" | ")[1] for line in
             (res / "tables" / "benchmark_v9-skin.md").read_text().splitlines() if line.startswith("| 2_") or
             line.startswith("| 3_")}
    assert table == {"2_target2d": "0 2 3", "3_bmc_all": "0 2 3"}  # the report seeds only, not seed 1
    assert v["verdict"] == "reported" and v["reported_at"] == "skin" and v["seeds"] == [0, 2, 3]
    assert v["sentence"].startswith("Reported, not tested (the test is at the glove level; 3 seeds)")
    assert "better_than_no_bmc: would pass;" in v["sentence"] and v["reduction"]["lo"] > 0
    assert "reported beside the test, not tested" in (res / "tables" / "benchmark_v9-skin.md").read_text()

    worse = tmp_path / "worse"  # BMC worse at this level: read as failing, still not a verdict
    _fake_runs(world, worse, {**noise, "2_target2d": 0.006, "3_bmc_all": 0.012}, seeds=(0, 1, 2, 3), level="skin")
    w = json.loads(verdict_table(bench.path, "skin", worse, n_boot=300).with_suffix(".json").read_text())["verdict"]
    assert w["verdict"] == "reported" and "better_than_no_bmc: would fail;" in w["sentence"]

    few = tmp_path / "few"  # a report seed short: interim, with how many
    _fake_runs(world, few, noise, seeds=(0, 1, 2), level="skin")
    f = judge(bench, level_runs(bench, "skin", few)[0], n_boot=300, reported_at="skin")
    assert f["verdict"] == "reported" and f["seeds"] == [0, 2] and "2 of 3 report seeds, interim numbers" in f["sentence"]
    assert "better_than_no_bmc: would fail so far;" in f["sentence"]  # 2 seeds: a wide t-interval
    with pytest.raises(ValueError, match="no report_seeds"):  # the file must say which seeds another level has
        verdict_table(world / "v9.yaml", "skin", res, n_boot=50)

    # the README's paragraph on that level (bmc summary): the map's seeds the verdict used, the interval's side of 0
    mp = pd.DataFrame({"level": "skin", "seed": [0, 1, 2, 3], "base_2d_pct": [6.5, 9.9, 6.9, 6.6],
                       "depth_norm_mm_reduction_pct": [1.0, 99.0, 2.0, 3.0], "pa_mpjpe_mm_reduction_pct": 0.5})
    kp = pd.DataFrame({"noise_px": [0.0, 4.0], "reduction_pct": [3.3, 1.6], "reduction_pct_std": [2.0, 1.6]})
    helps, hurts = (_level_paragraph(r, bench, "skin", mp, kp) for r in (res, worse))
    assert re.search(r"the 2D error is 0\.00 px \(0\.0% of the crop\) without BMC and 1\.\d\d px with it", helps)
    assert "3 seeds)" in helps and "BMC gained here, against that expectation." in helps
    assert "per seed (0, 2, 3) +1.0%, +2.0%, +3.0% on" in helps  # the map's seed 1 is not a report seed
    assert "3_bmc_all's interval lies above 0: BMC helps here." in helps and "3_bmc_all's interval lies below 0: BMC hurts here." in hurts
    assert "last point is at 3.9% 2D error (its lifter moved the root-relative depth by +1.6%, sd over seeds 1.6)" in helps
    assert "controls" not in helps  # none made for this level yet
    (res / "tables" / "controls_v9-skin.json").write_text(json.dumps({"valid": []}))
    assert "the test's cells are better_than_no_bmc not evaluated" in _level_paragraph(res, bench, "skin", mp, kp)
    (res / "tables" / "controls_v9-skin.json").write_text(json.dumps({"valid": [
        {"metric": "depth_norm_mm", "condition": "better_than_no_bmc", "valid": False}]}))
    assert "the test's cells are better_than_no_bmc not valid" in _level_paragraph(res, bench, "skin", mp, kp)
    shaky = dict(json.loads((res / "tables" / "benchmark_v9-skin.json").read_text()))
    shaky["verdict"] = {**shaky["verdict"], "reduction": {"reduction": 0.01, "lo": -0.02, "hi": 0.04}}
    (tmp_path / "shaky" / "tables").mkdir(parents=True)
    (tmp_path / "shaky" / "tables" / "benchmark_v9-skin.json").write_text(json.dumps(shaky))
    test_level = {**v, "reduction": {"reduction": 0.137, "lo": 0.098, "hi": 0.178}}  # as v3's glove level
    text = _level_paragraph(tmp_path / "shaky", bench, "skin", mp, kp, test_res=test_level)
    assert "3_bmc_all's interval covers 0: neither a gain nor a loss is shown here; reductions above 4.0% are excluded " \
           "(the glove level's was 13.7%)." in text
    assert "less than BMC gained at the glove level (13.7%), so agreeing with it here is weak evidence" in text
    assert "weak evidence" not in _level_paragraph(res, bench, "skin", mp, kp, test_res=test_level)  # BMC helped
    shaky["verdict"]["reduction"] = {"reduction": -0.02, "lo": -0.05, "hi": 0.01}  # below the map's whole range
    (tmp_path / "shaky" / "tables" / "benchmark_v9-skin.json").write_text(json.dumps(shaky))
    text = _level_paragraph(tmp_path / "shaky", bench, "skin", mp, kp, test_res=test_level)
    assert "BMC did worse than even the map's smallest value (1.6%)" in text and "weak evidence" not in text

    short = tmp_path / "short"  # runs off the frozen settings: the paragraph says so, whatever the numbers
    _fake_runs(world, short, noise, seeds=(0, 2, 3), steps=300, level="skin")
    verdict_table(bench.path, "skin", short, n_boot=50, strict=False)
    assert "**Not the registered runs**" in _level_paragraph(short, bench, "skin", mp, kp)


def test_the_image_regime_map_puts_each_level_and_seed_beside_the_keypoint_map(world, tmp_path):
    from bmclib.bench.verdict import image_regime_map

    res = tmp_path / "res"
    _fake_runs(world, res, {"2_target2d": 0.012, "3_bmc_all": 0.006})
    (res / "tables").mkdir(parents=True, exist_ok=True)
    (res / "tables" / "regime_map.csv").write_text(
        "population,noise_px,method,limits,reduction_pct,reduction_pct_std\n"
        "20_hands,0.0,lifter,source_quantile,3.0,1.0\n20_hands,4.0,lifter,source_quantile,1.5,1.0\n"
        "20_hands,4.0,tto,source_quantile,9.0,1.0\n")
    md = image_regime_map(world / "v9.yaml", res).read_text()
    table = np.genfromtxt(res / "tables" / "regime_map_images.csv", delimiter=",", names=True, dtype=None,
                          encoding=None)
    assert len(table) == 3 and set(table["level"]) == {"glove"}
    assert np.allclose(table["base_2d_px"], 0.0) and (table["depth_norm_mm_reduction_pct"] > 30).all()
    assert "| 4.00 | 3.92 | 1.50 |" in md  # 4 px of Gaussian noise per coordinate: 1.25 x 4 px = 3.9% of 128 px
    assert (res / "figures" / "regime_map_images.png").is_file()


def test_the_controls_find_a_benchmarks_runs_by_its_own_names(world):
    from bmclib.bench.controls import benchmark_set

    s = benchmark_set("skin", benchmark=world / "v9.yaml")
    assert s["runs"].format(preset="cpu", run="3_bmc_all", seed=2) == "runs/" + run_name("cpu", "3_bmc_all", 2, "v9-skin")
    assert s["seeds"] == (0, 1, 2) and s["candidates"] == ("3_bmc_all",)
    assert s["roles"] == {"base": "2_target2d", "oracle": "4_target3d_oracle", "source_only": "1_source3d"}


def test_runs_trained_with_other_settings_are_not_judged(world, tmp_path):
    short = tmp_path / "short"
    _fake_runs(world, short, {"2_target2d": 0.012, "3_bmc_all": 0.006, "4_target3d_oracle": 0.002}, steps=300)
    with pytest.raises(ValueError, match=r"trained with other settings .* steps=300 \(frozen: 3000\)"):
        level_runs(load_benchmark(world / "v9.yaml"), "glove", short)


def test_the_refine_sentence_compares_refining_run_2_with_run_3(tmp_path):
    from bmclib.bench.summary import _refine_sentence

    (tmp_path / "tables").mkdir()
    rows = ["run,seed,stage,depth_norm_mm"]
    for s in (0, 1):  # run 2 refined 36.5, run 3 40.7 before and 39.2 after (the skin level's shape)
        rows += [f"2_target2d,{s},before,39.8", f"2_target2d,{s},after (prediction root),36.5",
                 f"3_bmc_all,{s},before,40.7", f"3_bmc_all,{s},after (prediction root),39.2"]
    (tmp_path / "tables" / "refine_v9-skin_cpu.csv").write_text("\n".join(rows) + "\n")
    text = _refine_sentence(tmp_path, "v9-skin")
    assert "run 2_target2d 39.80 → 36.50 mm (2 seeds); run 3_bmc_all 40.70 → 39.20 mm (2 seeds)" in text
    assert "refining run 2_target2d alone (36.50 mm) beats run 3_bmc_all before and after refinement" in text
    assert _refine_sentence(tmp_path, "v9-glove", missing_ok=True) == ""
    (tmp_path / "tables" / "refine_v9-skin_cpu.csv").write_text("\n".join(rows[:5] + [
        r.replace("3_bmc_all,1", "3_bmc_all,7") for r in rows[5:]]) + "\n")  # run 3 on other seeds: not compared
    assert "refining" not in _refine_sentence(tmp_path, "v9-skin")
