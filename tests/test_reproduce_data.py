"""`make reproduce` needs no data it does not make (issue: notebook 05 failed on a fresh clone because
the verdict re-scored the skin level's runs against a cache only a training machine has).

Checked on the committed runs and benchmark files, without rendering: every run a notebook's tables
re-read has valid per-image scores or lies on the data step's plan; and the verdict of every v3
level is rebuilt from the committed files without opening a single cache."""
import json
import shutil

import pytest

import bmclib.data.cache as cache_module
from bmclib.bench.benchmark import load_benchmark
from bmclib.bench.checkout import find_checkout
from bmclib.bench.reproduce import data_plan, unplanned_reads
from bmclib.bench.scores import SCORES_FILE, validated_runs
from bmclib.bench.verdict import level_runs

REPO = find_checkout()
RESULTS = REPO / "results"
pytestmark = pytest.mark.skipif(REPO is None, reason="needs the checkout's committed results")


def test_the_data_plan_is_the_test_level_of_benchmark_v3():
    plan = data_plan("cpu", "data")
    assert plan["benchmark"].name == "v3" and plan["level"] == plan["benchmark"].test["level"] == "glove"
    assert str(plan["eval"]) == "data/synth/v3_cpu_96px_seed1_glove/target/cache/evaluation"
    # the committed glove runs were evaluated on exactly these caches (so a fresh clone's data is theirs)
    prov = json.loads((RESULTS / "runs" / "cpu_v3-glove_2_target2d_seed0" / "metrics.json").read_text())["provenance"]
    assert prov["data"]["eval_cache"] == str(plan["eval"]) and prov["data"]["source"] == str(plan["source"])


def test_every_committed_run_can_be_tabled_with_what_the_reproduction_makes():
    runs = validated_runs(RESULTS)
    assert len([r for r in runs if "-skin_" in r.name]) >= 18  # the runs that broke notebook 05 are checked
    assert unplanned_reads(RESULTS) == []


def test_the_check_flags_a_run_that_would_need_unplanned_data(tmp_path):
    """The check can fail: a skin run without its scores needs the skin caches; a glove run without
    them needs only the planned ones."""
    res = tmp_path / "results"
    (res / "runs").mkdir(parents=True)
    shutil.copy(RESULTS / "benchmark_v3.yaml", res)
    for name in ("cpu_v3-skin_3_bmc_all_seed0", "cpu_v3-glove_3_bmc_all_seed0"):
        shutil.copytree(RESULTS / "runs" / name, res / "runs" / name)
    assert unplanned_reads(res) == []
    (res / "runs" / "cpu_v3-glove_3_bmc_all_seed0" / SCORES_FILE).unlink()
    assert unplanned_reads(res) == []  # its data is the data step's
    (res / "runs" / "cpu_v3-skin_3_bmc_all_seed0" / SCORES_FILE).unlink()
    bad = unplanned_reads(res)
    assert len(bad) == 1 and "cpu_v3-skin_3_bmc_all_seed0" in bad[0]
    assert "data/synth/v3_cpu_96px_seed1/target/cache/evaluation" in bad[0] and "does not make" in bad[0]


@pytest.mark.parametrize("level", ["glove", "skin"])
def test_each_v3_verdict_rebuilds_from_committed_files_alone(level, monkeypatch):
    def refuse(path, *a, **k):
        raise AssertionError(f"the verdict opened the cache {path}")
    monkeypatch.setattr(cache_module, "PreparedCache", refuse)
    bench = load_benchmark(RESULTS / "benchmark_v3.yaml")
    per, read = level_runs(bench, level, RESULTS)
    assert read["scored_here"] == 0 and read["images"] == 1000 and read["image_size"] == 96
    committed = json.loads((RESULTS / "tables" / f"benchmark_v3-{level}.json").read_text())
    assert read["eval_sha256"] == committed["provenance"]["eval_sha256"]
    v = committed["verdict"]
    base, bmc = v["base_run"], v["bmc_run"]
    seeds = v["seeds"]
    mean = lambda run: float(sum(per[run][s][v["metric"]].mean() for s in seeds) / len(seeds))  # noqa: E731
    assert mean(base) == pytest.approx(v["base_mean"], rel=1e-12)
    assert mean(bmc) == pytest.approx(v["bmc_mean"], rel=1e-12)
