import json
import os
from pathlib import Path

import pytest
import torch

from bmclib.bench.experiment import RUNS, run_experiment


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("experiment")
    return dict(data_root=str(base / "synth"), runs_root=str(base / "runs"), results_root=str(base / "results"))


def _metrics(results_root, name):
    return json.loads(Path(results_root, "runs", name, "metrics.json").read_text())


@pytest.mark.slow
def test_parallel_jobs_match_one_process_and_warmup_fractions(roots, tmp_path, capsys):
    runs = ["2_target2d", "7_bmc_warmup"]
    run_experiment("tiny", [0], runs, progress=False, jobs=2, **roots)
    out = capsys.readouterr().out
    assert "2 runs in 2 processes" in out and out.count("[done]") == 2
    par = {r: _metrics(roots["results_root"], f"tiny_{r}_seed0") for r in runs}
    # the same runs in this process, one thread each like the workers: the same numbers
    seq = dict(roots, runs_root=str(tmp_path / "runs"), results_root=str(tmp_path / "results"))
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    try:
        run_experiment("tiny", [0], runs, progress=False, jobs=1, **seq)
    finally:
        torch.set_num_threads(threads)
    for r in runs:
        one = _metrics(seq["results_root"], f"tiny_{r}_seed0")
        assert one["metrics"]["depth_mm"] == par[r]["metrics"]["depth_mm"], r
        assert one["metrics"]["epe_2d_px"] == par[r]["metrics"]["epe_2d_px"], r
    ck = torch.load(f"{roots['runs_root']}/tiny_7_bmc_warmup_seed0/checkpoint.pt", weights_only=False)
    assert (ck["config"]["bmc_start"], ck["config"]["bmc_ramp"]) == (3, 1)  # 0.5 and 0.1 of 6 steps
    # a second call finds both finished
    run_experiment("tiny", [0], runs, progress=False, jobs=2, **roots)
    assert capsys.readouterr().out.count("[skip]") == 2
    # evaluate_only: evaluates the trained runs again, trains nothing, names the untrained one
    metrics = Path(roots["results_root"], "runs", "tiny_2_target2d_seed0", "metrics.json")
    before = metrics.stat().st_mtime_ns
    ck = Path(roots["runs_root"], "tiny_2_target2d_seed0", "checkpoint.pt").stat().st_mtime_ns
    run_experiment("tiny", [0], runs + ["1_source3d"], progress=False, evaluate_only=True, **roots)
    out = capsys.readouterr().out
    assert out.count("[done]") == 2 and "[not trained] tiny_1_source3d_seed0" in out
    assert metrics.stat().st_mtime_ns > before
    assert Path(roots["runs_root"], "tiny_2_target2d_seed0", "checkpoint.pt").stat().st_mtime_ns == ck
    assert not Path(roots["runs_root"], "tiny_1_source3d_seed0").exists()
    m = _metrics(roots["results_root"], "tiny_2_target2d_seed0")["metrics"]
    assert m["bmc_true_depth"] > 0 and m["bmc_pred"] > 0


def test_bad_experiment_arguments(roots):
    with pytest.raises(ValueError, match="no_such_run"):
        run_experiment("tiny", [0], ["no_such_run"], progress=False, **roots)
    with pytest.raises(ValueError, match="jobs"):
        run_experiment("tiny", [0], ["1_source3d"], progress=False, jobs=0, **roots)
    assert "6_bmc_depth_grad" in RUNS and RUNS["6_bmc_depth_grad"]["bmc_grad"] == "depth"


def test_true_depth_study(roots, tmp_path):
    from bmclib.bench.tables import true_depth_study

    if not Path(roots["results_root"], "runs", "tiny_2_target2d_seed0", "metrics.json").is_file():
        run_experiment("tiny", [0], ["2_target2d"], progress=False, **roots)
    out = true_depth_study("tiny", roots["results_root"], sigmas=(0.0, 1.0, 4.0))
    csv = out.with_suffix(".csv").read_text().splitlines()
    assert len(csv) == 4 and csv[0].startswith("sigma_px")
    bmc = [float(line.split(",")[2]) for line in csv[1:]]
    assert bmc[0] < bmc[1] < bmc[2]
    assert Path(roots["results_root"], "figures", "bmc_true_depth_tiny.png").stat().st_size > 10_000
    # a results folder whose evaluation data is gone: the error names the missing file
    moved = tmp_path / "results" / "runs" / "tiny_2_target2d_seed0"
    moved.mkdir(parents=True)
    m = json.loads(Path(roots["results_root"], "runs", "tiny_2_target2d_seed0", "metrics.json").read_text())
    m["provenance"]["data"]["eval_cache"] = str(tmp_path / "gone")
    (moved / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(FileNotFoundError, match="gone"):
        true_depth_study("tiny", tmp_path / "results")


def test_an_interrupted_run_resumes_inside_the_experiment(roots, capsys):
    from bmclib.train import train

    run_experiment("tiny", [1], ["1_source3d"], progress=False, **roots)  # makes the config and data
    name = "tiny_1_source3d_seed1"
    full = torch.load(Path(roots["runs_root"], name, "checkpoint.pt"), weights_only=False)
    Path(roots["runs_root"], name, "checkpoint.pt").unlink()
    from bmclib.train import TrainConfig, config_from_dict

    train(config_from_dict(TrainConfig, full["config"], "test"), progress=False, stop_after=3)  # "killed" at step 3
    capsys.readouterr()
    run_experiment("tiny", [1], ["1_source3d"], progress=False, **roots)
    out = capsys.readouterr().out
    assert f"[resume] {name}: from step 3 of 6" in out and f"[done] {name}" in out
    again = torch.load(Path(roots["runs_root"], name, "checkpoint.pt"), weights_only=False)
    assert again["step"] == 6
    for k, v in full["model"].items():
        assert torch.equal(v, again["model"][k]), k  # exactly the uninterrupted run


def test_benchmark_v2_file_drives_the_experiment(tmp_path):
    from bmclib.bench.benchmark import DEFAULT_BENCHMARK, load_benchmark

    roots = dict(data_root=str(tmp_path / "synth"), runs_root=str(tmp_path / "runs"), results_root=str(tmp_path / "res"))
    table = run_experiment("tiny", [0], ["1_source3d", "3_bmc_all"], progress=False, benchmark=str(DEFAULT_BENCHMARK),
                           **roots)
    text = Path(table).read_text()
    assert Path(table).name == "synthetic_benchmark_v2_tiny.md" and "3_bmc_all" in text
    assert "Pre-registered test (v2)" in text and "not evaluated yet" in text  # run 2 missing
    bench = load_benchmark(DEFAULT_BENCHMARK)
    cfg = _metrics(roots["results_root"], "tiny_v2_3_bmc_all_seed0")["provenance"]["config"]
    for key, value in bench.training.items():
        assert cfg[key] == (cfg["batch_size"] if value == "equal" else value), key
    assert "v2_tiny_64px_seed0" in cfg["source"]  # its own data folder
    limits = json.loads(Path(cfg["limits"]).read_text())
    assert limits["meta"]["interval_coverage"] == bench.limits["interval_coverage"]
    # benchmark v1 (no file) keeps the settings its results were made with
    run_experiment("tiny", [0], ["2_target2d"], progress=False, **roots)
    v1 = _metrics(roots["results_root"], "tiny_2_target2d_seed0")["provenance"]["config"]
    assert (v1["loss_2d"], v1["bmc_root"], v1["batch_weak"]) == ("image", "model", None)


@pytest.mark.slow
def test_gpu_check_script_on_the_cpu(tmp_path):
    """data_scripts/gpu_check.sh as a fresh GPU machine runs it, here with --device cpu and a tiny size:
    it renders both domains, prints the throughput table, trains and evaluates runs 1-4 and writes
    its summary with provenance."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run(["bash", str(repo / "data_scripts" / "gpu_check.sh"), "--device", "cpu", "--preset", "tiny",
                        "--num", "64", "--num-eval", "32", "--steps", "4", "--data", str(tmp_path / "data"),
                        "--results", str(tmp_path / "results")],
                       cwd=repo, env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "CUDA: False" in r.stdout and "BMC share of step" in r.stdout
    saved = json.loads((tmp_path / "results" / "gpu_check.json").read_text())
    s = saved["summary"]
    assert s["device"] == "cpu" and s["steps"] == 4 and s["render_images_per_s"] > 0
    assert set(s["runs"]) == {"1_source3d", "2_target2d", "3_bmc_all", "4_target3d_oracle"}
    assert all(r["epe_2d_px"] > 0 for r in s["runs"].values())
    assert s["throughput"][0]["images_per_s"] > 0 and s["throughput"][0]["peak_mem_gb"] is None
    assert saved["provenance"]["made_by"] == "bmc gpu-check"
    md = (tmp_path / "results" / "gpu_check.md").read_text()
    assert "| 3_bmc_all |" in md and "runs 1-4 of benchmark v3" in md and "glove level" in md


def test_model_study_trains_candidates_on_source_and_skips_finished_ones(tmp_path, capsys):
    from bmclib.bench.model_study import run_study

    kw = dict(preset="tiny", candidates=["deconv", "skip_heatmap"], steps=(2,), data_root=str(tmp_path / "data"),
              runs_root=str(tmp_path / "runs"), results_root=str(tmp_path / "results"), progress=False)
    table = run_study(**kw)
    csv = (tmp_path / "results" / "tables" / "model_study.csv").read_text().splitlines()
    assert len(csv) == 3 and "epe_2d_pct_crop" in csv[0]
    assert {line.split(",")[0] for line in csv[1:]} == {"deconv", "skip_heatmap"}
    metrics = json.loads((tmp_path / "results" / "model_study" / "study_tiny_skip_heatmap_2steps_seed0" /
                          "metrics.json").read_text())
    cfg = metrics["provenance"]["config"]
    assert cfg["model"]["decoder"] == "skip" and cfg["w_heatmap"] == 1.0 and cfg["weak"] == ""
    # evaluated on the source domain's evaluation split (source validation), never on target-test
    assert "/source/cache/evaluation" in metrics["provenance"]["data"]["eval_cache"]
    assert "source validation" in table.read_text()
    capsys.readouterr()
    run_study(**kw)
    assert capsys.readouterr().out.count("[skip]") == 2
